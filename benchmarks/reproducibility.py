"""Run one obliviate grid command twice, each from an empty model cache and an empty run directory, and compare the
rows apart from timings and timestamps (what a row promises: the same command gives the same row).

    .venv/bin/python benchmarks/reproducibility.py -- bench --methods all --seeds 3 --forget random:0.1
    .venv/bin/python benchmarks/reproducibility.py -- lm bench --task authors --forget forget10 --methods all --seeds 1

Prints the number of rows, how many are identical, the first difference if any, and the wall time of each run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(args, root: Path, name: str) -> dict:
    env = {**os.environ, "OBLIVIATE_CACHE": str(root / f"cache-{name}")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "obliviate.cli", *args, "--runs", str(root / "runs"), "--name", name,
                    "--no-progress"], env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"run {name}: {time.perf_counter() - start:.0f} s")
    rows = {}
    for p in (root / "runs" / name / "rows").glob("*.json"):
        row = json.loads(p.read_text())
        rows[row["run_id"]] = row
    return rows


def main() -> int:
    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    from obliviate.grid import strip_volatile
    with tempfile.TemporaryDirectory() as tmp:
        a, b = run_once(args, Path(tmp), "first"), run_once(args, Path(tmp), "second")
    same = [k for k in a if k in b and strip_volatile(a[k]) == strip_volatile(b[k])]
    print(f"{len(a)} rows, {len(b)} rows; identical apart from timings: {len(same)}")
    for k in a:
        if k not in same:
            x, y = strip_volatile(a[k]), strip_volatile(b.get(k, {}))
            diff = [f for f in set(x) | set(y) if x.get(f) != y.get(f)]
            print(f"differs: {k}: {sorted(diff)}")
            break
    return 0 if len(same) == len(a) == len(b) else 1


if __name__ == "__main__":
    sys.exit(main())
