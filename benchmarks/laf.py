"""LAF (label-free) and LAF+R against supervised baselines, for random and class forgetting, on the default benchmark
(MNIST-1D / cnn, presets), as in Shen et al., "Label-Agnostic Forgetting" (ICLR 2024).

    .venv/bin/python benchmarks/laf.py [--seeds 3] [--methods laf,laf+r,finetune,neggrad+,random-label]

Prints medians over seeds: UA, MIA-efficacy, RA, TA, the gap to the gold model and the unlearning time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import vision_grid  # noqa: E402
from sparsity import header, summarize, versions  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", default="laf,laf+r,finetune,neggrad+,random-label")
    p.add_argument("--forget", nargs="+", default=["random:0.1", "class:3"])
    p.add_argument("--runs", default="runs")
    args = p.parse_args()
    store = vision_grid("laf", args.forget, args.methods.split(","), args.seeds, args.runs)
    print("\n".join(header("setting") + summarize(store.rows(), "mnist1d/cnn")))
    print(f"\n{versions()}")


if __name__ == "__main__":
    main()
