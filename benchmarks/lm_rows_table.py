"""A markdown table of chosen metrics from the rows of one or more language-model runs (what table.md leaves out:
ECO's classifier error rates and overhead, DP2U's privacy spent and its cost against the gold model's training).

    python benchmarks/lm_rows_table.py runs/lm-whp-eco --metrics verbmem_f knowmem_f forget_quality eco_fpr_holdout
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def fmt(v) -> str:
    if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (runs/NAME)")
    ap.add_argument("--metrics", nargs="+", required=True, help="metric keys of row['metrics']")
    ap.add_argument("--params", nargs="*", default=[], help="hyperparameters of row['params'] to show")
    ap.add_argument("--cost", action="store_true", help="add dp_unlearn_seconds / gold_seconds")
    args = ap.parse_args()
    cols = args.params + args.metrics + (["cost_vs_gold"] if args.cost else [])
    print("| run | method | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for run in args.runs:
        rows = [json.loads(p.read_text()) for p in sorted(Path(run, "rows").glob("*.json"))]
        rows.sort(key=lambda r: ({"target": 0, "gold": 1}.get(r["method"], 2), r["method"]))
        for r in rows:
            if r.get("status") != "ok":
                print(f"| {Path(run).name} | {r['method']} | failed: {r.get('error', '')[:80]} |")
                continue
            m, p = r["metrics"], r.get("params", {})
            cells = [fmt(p.get(k)) if not isinstance(p.get(k), str) else p.get(k) for k in args.params]
            cells += [fmt(m.get(k)) for k in args.metrics]
            if args.cost:
                seconds = m.get("dp_unlearn_seconds")
                cells.append(fmt(seconds / r["gold_seconds"]) if seconds and r.get("gold_seconds") else "–")
            print(f"| {Path(run).name} | {r['method']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
