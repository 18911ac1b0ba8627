"""Sparsity-aware unlearning on the default benchmark (MNIST-1D / cnn, presets): finetune vs l1-sparse, and methods with
and without pruning first (``--prune``), as in Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023).

    .venv/bin/python benchmarks/sparsity.py [--seeds 3] [--prune 0.95 ...] [--methods finetune,l1-sparse,neggrad+]

Dense and pruned grids go to separate run directories (RUNS/sparsity-dense, RUNS/sparsity-prune0.95); rerunning resumes.
Prints a Markdown table of medians over seeds: UA = 1 - Acc_f, MIA-efficacy, RA, TA, the gap to the gold model of the
same setting (|Acc_f - gold Acc_f| and Avg Gap), and the unlearning time.
"""
from __future__ import annotations

import argparse
import platform
from collections import defaultdict

import numpy as np
import torch

from common import vision_grid


COLUMNS = [("UA", lambda m, g: 1 - m["acc_forget"]), ("MIA-eff", lambda m, g: m["mia_efficacy"]),
           ("RA", lambda m, g: m["acc_retain"]), ("TA", lambda m, g: m["acc_test"]),
           ("|ΔAcc_f| to gold", lambda m, g: abs(m["acc_forget"] - g["acc_forget"])),
           ("Avg Gap", lambda m, g: m["avg_gap"]), ("time (s)", lambda m, g: m["seconds"])]


def summarize(rows, label: str) -> list[str]:
    """Markdown table lines: one row per method, medians over seeds (gaps against the gold row of the same seed)."""
    gold = {(r["forget"], r["seed"]): r["metrics"] for r in rows if r["method"] == "gold" and r["status"] == "ok"}
    cells = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["status"] != "ok":
            continue
        g = gold[(r["forget"], r["seed"])]
        for name, f in COLUMNS:
            cells[(r["forget"], r["method"])][name].append(f(r["metrics"], g))
    out = []
    order = {"original": 0, "gold": 1}
    for (forget, method), vals in sorted(cells.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 2), kv[0][1])):
        n = len(vals["UA"])
        out.append(f"| {label} | {forget} | {method} | {n} | " + " | ".join(f"{np.median(vals[c]):.3f}" for c, _ in COLUMNS) + " |")
    return out


def header(first: str) -> list[str]:
    names = [first, "forget", "method", "seeds"] + [c for c, _ in COLUMNS]
    return ["| " + " | ".join(names) + " |", "|" + "---|" * 3 + "---:|" * (len(names) - 3)]


def versions() -> str:
    import obliviate
    return (f"obliviate {obliviate.__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
            f"{platform.machine()}, torch threads {torch.get_num_threads()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--prune", type=float, nargs="+", default=[0.95], help="one or more sparsities")
    p.add_argument("--methods", default="finetune,l1-sparse,neggrad+")
    p.add_argument("--forget", nargs="+", default=["random:0.1"])
    p.add_argument("--runs", default="runs")
    args = p.parse_args()
    lines = header("model")
    for prune in (None, *args.prune):
        name = "sparsity-dense" if prune is None else f"sparsity-prune{prune:g}"
        store = vision_grid(name, args.forget, args.methods.split(","), args.seeds, args.runs, prune=prune)
        lines += summarize(store.rows(), "dense" if prune is None else f"pruned {prune:g}")
    print("\n".join(lines))
    print(f"\n{versions()}")


if __name__ == "__main__":
    main()
