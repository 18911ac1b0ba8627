"""Worst-case vs random forget sets of the same size on the default benchmark (MNIST-1D / cnn, presets), as in Fan et al.,
"Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine Unlearning" (ECCV 2024).

    .venv/bin/python benchmarks/worst_case.py [--seeds 3] [--size 0.1] [--methods finetune,l1-sparse,neggrad+,lotus]

The worst-case set is the ``worst-case:SIZE`` forget spec (bi-level selection with the fine-tuning lower level on each
seed's original model, cached). Prints medians over seeds of the gap of each unlearned model to the gold model retrained
without that forget set: |Acc_f - gold|, |MIA-efficacy - gold|, Avg Gap; a method looks worse the larger they are.
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
    p.add_argument("--size", type=float, default=0.1)
    p.add_argument("--methods", default="finetune,l1-sparse,neggrad+,lotus")
    p.add_argument("--runs", default="runs")
    args = p.parse_args()
    store = vision_grid("worst-case", [f"random:{args.size:g}", f"worst-case:{args.size:g}"],
                        args.methods.split(","), args.seeds, args.runs)
    print("\n".join(header("set") + summarize(store.rows(), "mnist1d/cnn")))
    print(f"\n{versions()}")


if __name__ == "__main__":
    main()
