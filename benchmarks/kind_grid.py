"""The classifier grid with the preset of the forget spec's kind: ``presets/{dataset}-{model}-{kind}.yaml`` (written by
``obliviate tune``) overlaid on ``{dataset}-{model}.yaml``, passed to the grid as ``--set`` overrides, then the table
and the RF-JSD/JSD correlation per seed.

    .venv/bin/python benchmarks/kind_grid.py --forget class:3 --name after-class [--seeds 3] [--methods all]

(Until the grid engine picks the kind's preset itself, this is how a grid uses it.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from obliviate.bench import Grid, run_grid  # noqa: E402
from obliviate.presets import load_preset  # noqa: E402
from rfjsd_correlation import correlations  # noqa: E402


def kind_overrides(dataset: str, model: str, forget: str) -> list:
    """``method.key=value`` for every value the kind's preset sets differently from the (dataset, model) preset."""
    base, kind = load_preset(dataset, model)["methods"], load_preset(dataset, model, forget)["methods"]
    return [f"{m}.{k}={json.dumps(v)}" for m, hp in kind.items() for k, v in hp.items()
            if base.get(m, {}).get(k) != v]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--model", default="cnn")
    p.add_argument("--forget", default="random:0.1")
    p.add_argument("--methods", default="all")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--name", required=True)
    p.add_argument("--runs", default="runs")
    args = p.parse_args()
    overrides = kind_overrides(args.dataset, args.model, args.forget)
    grid = Grid(dataset=args.dataset, model=args.model, forgets=[args.forget], methods=args.methods.split(","),
                seeds=list(range(args.seeds)), name=args.name, root=args.runs, overrides=overrides, cpu=True,
                progress=False)
    store = run_grid(grid, log=print)
    print(f"preset overrides from the `{args.forget.split(':')[0]}` preset: {len(overrides)}")
    print((store.root / "table.md").read_text())
    for seed, (r, n, top) in correlations(store.root).items():
        print(f"seed {seed}: Pearson r(RF-JSD, JSD) = {r:.3f} over {n} models; largest JSD: {top}")


if __name__ == "__main__":
    main()
