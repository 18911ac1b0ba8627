"""Pearson correlation of RF-JSD with JSD across the models of a grid, per seed (gold excluded, original included),
and the methods with the largest JSD (those drive the correlation).

    .venv/bin/python benchmarks/rfjsd_correlation.py runs/default
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def correlations(run_dir) -> dict:
    """{seed: (pearson r, number of models, 'method jsd, ...' for the three largest JSD)} per forget spec's seeds."""
    by_seed = defaultdict(list)
    for path in sorted(Path(run_dir, "rows").glob("*.json")):
        row = json.loads(path.read_text())
        m = row.get("metrics") or {}
        if row.get("status") == "ok" and row["method"] != "gold" and "jsd" in m and "rf_jsd" in m:
            by_seed[row["seed"]].append((row["method"], m["rf_jsd"], m["jsd"]))
    out = {}
    for seed, items in sorted(by_seed.items()):
        rf, js = np.array([i[1] for i in items]), np.array([i[2] for i in items])
        r = float(np.corrcoef(rf, js)[0, 1]) if len(items) > 2 and rf.std() > 0 and js.std() > 0 else float("nan")
        top = sorted(items, key=lambda i: -i[2])[:3]
        out[seed] = (r, len(items), ", ".join(f"{m} {j:.3f}" for m, _, j in top))
    return out


if __name__ == "__main__":
    res = correlations(sys.argv[1])
    for seed, (r, n, top) in res.items():
        print(f"seed {seed}: r = {r:.3f} over {n} models; largest JSD: {top}")
    rs = [v[0] for v in res.values()]
    print(f"mean ± std over seeds: {np.mean(rs):.3f} ± {np.std(rs):.3f}")
