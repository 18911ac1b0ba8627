"""DP2Unlearning over epsilon: quality against the gold model and cost against retraining, on one cell.

Opens the text family's cell once (target and gold from the cache, evaluated once) and runs dp2u for each epsilon;
prints a markdown table: privacy spent, the six-way metrics, the DP base's training time, the unlearning step's time
and its ratio to the gold model's training time.

    python benchmarks/lm_dp2u_epsilon.py --epsilons 1 8 100 --set dp2u.dp_epochs=5
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

KEYS = ("verbmem_f", "knowmem_f", "knowmem_r", "forget_quality", "model_utility", "utility_ratio")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="authors")
    ap.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 8.0, 100.0])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--eval-limit", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from obliviate.text.family import TASK_DEFAULT_FORGET, TextFamily
    family = TextFamily(task=args.task, overrides=args.overrides, eval_limit=args.eval_limit, progress=False)
    family.resolve()
    cell = family.open_cell(args.seed, TASK_DEFAULT_FORGET[args.task])
    gold = cell.evaluator.gold
    print("| model | epsilon spent | noise multiplier | " + " | ".join(KEYS) +
          " | DP base s | unlearning s | unlearning / gold training |")
    print("|---|---|---|" + "---|" * len(KEYS) + "---|---|---|")
    g = {**gold, "utility_ratio": gold["utility"] / cell.target_metrics["utility"]}
    t = {**cell.target_metrics, "utility_ratio": 1.0}
    for name, m, secs in (("target", t, cell.t_target), ("gold", g, cell.t_gold)):
        print(f"| {name} | – | – | " + " | ".join(f"{m.get(k, float('nan')):.3g}" for k in KEYS) +
              f" | – | {secs:.1f} | – |")
    base = family.method_params("dp2u", "")
    for eps in args.epsilons:
        with tempfile.TemporaryDirectory() as tmp:
            row = cell.run("dp2u", {**base, "epsilon": eps}, Path(tmp))
        m = {**row["metrics"], "utility_ratio": row["utility_ratio"]}
        print(f"| dp2u eps={eps:g} | {m['dp_epsilon']:.3g} | {m['dp_noise_multiplier']:.3g} | " +
              " | ".join(f"{m.get(k, float('nan')):.3g}" for k in KEYS) +
              f" | {m['dp_base_seconds']:.1f} | {m['dp_unlearn_seconds']:.1f} | "
              f"{m['dp_unlearn_seconds'] / cell.t_gold:.3f} |", flush=True)


if __name__ == "__main__":
    main()
