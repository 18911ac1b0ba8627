"""Class forgetting against the issue's bar, from a grid's rows: per method, the forgotten class's accuracy on D_f and on
its test images (within 5 points of the gold model's) and the kept classes' test accuracy (at most 3 points below the
original's), as means over seeds of the per-seed differences.

    .venv/bin/python benchmarks/class_criterion.py runs/class3-digits
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

FORGET_BAND, KEPT_BAND = 0.05, 0.03


def rows(run_dir):
    out = defaultdict(dict)   # method -> seed -> metrics
    presets = defaultdict(set)
    for path in sorted(Path(run_dir, "rows").glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("status") == "ok":
            out[r["method"]][r["seed"]] = r["metrics"]
            if r.get("preset"):
                presets[r["method"]].add(r["preset"])
    return out, presets


def table(run_dir) -> str:
    by, presets = rows(run_dir)
    seeds = sorted(set(by["gold"]) & set(by["original"]))
    lines = ["| method | Acc D_f | Acc test, forgotten class | Acc test, kept classes | d forget vs gold (D_f / test) "
             "| kept loss vs original | meets bar | preset |", "|---|---:|---:|---:|---:|---:|:---:|---|"]
    met = []
    for m in ["original", "gold"] + sorted(k for k in by if k not in ("original", "gold")):
        s = [x for x in seeds if x in by[m]]
        get = lambda key, who=m: np.array([by[who][x][key] for x in s])
        f, tf, tk = get("acc_forget"), get("acc_test_forgotten"), get("acc_test_kept")
        df = np.mean(f - get("acc_forget", "gold"))
        dt = np.mean(tf - get("acc_test_forgotten", "gold"))
        loss = np.mean(get("acc_test_kept", "original") - tk)
        ok = abs(df) <= FORGET_BAND and abs(dt) <= FORGET_BAND and loss <= KEPT_BAND
        if m not in ("original", "gold") and ok:
            met.append(m)
        pm = lambda a: f"{a.mean():.3f} ± {a.std():.3f}"
        lines.append(f"| {m}{'' if len(s) == len(seeds) else f' (n={len(s)})'} | {pm(f)} | {pm(tf)} | {pm(tk)} | "
                     f"{df:+.3f} / {dt:+.3f} | {loss:+.3f} | {'yes' if ok else 'no'} | "
                     f"{', '.join(sorted(presets[m])) or '–'} |")
    n = len([k for k in by if k not in ("original", "gold")])
    lines.append(f"\nSeeds {seeds}; {len(met)} of {n} methods meet the bar: {', '.join(met)}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1] if len(sys.argv) > 1 else "runs/class3-digits"))
