"""The command line: `obliviate unlearn | bench | methods | ...`. Each command module adds its own subparser.

Errors in the input (ObliviateError) are printed as one line on stderr with exit status 2, never as a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import ObliviateError

# Modules that define `add_commands(subparsers)`; each command sets `func(args) -> int`.
COMMAND_MODULES = [
    "obliviate.vision.cli",
    "obliviate.text.cli",
    "obliviate.vision.select_cli",
    "obliviate.report_cli",
    "obliviate.vlm.cli",
]


def add_grid_options(p: argparse.ArgumentParser) -> None:
    """Options of the grid engine, shared by every family's `bench` and `unlearn`."""
    p.add_argument("--threads", type=int, default=2,
                   help="torch CPU threads (fixed, and recorded in every row, so timings and results are comparable)")
    p.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                   help="keep failed rows instead of running them again")
    p.add_argument("--retrain-corrupt", action="store_true",
                   help="train a cached reference model again when its checkpoint fails its sha256 check "
                        "(default: stop with an error naming the file)")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="run cells in this process, or one Ray task per cell (extra obliviate[ray])")
    p.add_argument("--ray-address", default=None,
                   help="address of a running Ray cluster (default: start a local one); the runs and cache folders "
                        "must be on a filesystem every node shares")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="mirror every new row to this MLflow tracking URI, e.g. file:./mlruns (extra obliviate[mlflow])")


def grid_options(args, forgets, methods, seeds, name):
    from .grid import GridOptions
    return GridOptions(methods=methods, seeds=seeds, forgets=forgets, name=name, root=args.runs,
                       retry_failed=args.retry_failed, threads=args.threads, executor=args.executor,
                       ray_address=args.ray_address, mlflow=args.mlflow, progress=not args.no_progress)


def show_run(store, run_id: str, as_json: bool) -> int:
    """Print one run's row (``--json``: as one JSON object) or its table; exit status 1 if the run failed."""
    import json
    row = store.load_row(run_id)
    if row is None:
        raise ObliviateError(f"run {run_id} left no row in {store.root}")
    if as_json:
        print(json.dumps(row, sort_keys=True))
    else:
        print((store.root / "table.md").read_text())
        print(f"rows and tables written to {store.root}/")
    return 0 if row["status"] == "ok" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obliviate", description="Machine unlearning: remove the influence of training data from a trained model, "
                                      "and measure how well it worked against a retrained (gold) model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from . import __version__
    parser.add_argument("--version", action="version", version=f"obliviate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "no_progress", False):
        # transformers and huggingface_hub read this when imported (e.g. the "Writing model shards" bars of a save)
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        return int(args.func(args) or 0)
    except ObliviateError as e:
        print(f"obliviate: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a filesystem fault (read-only folder, full disk): one line naming the path
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"obliviate: error: cannot write or read{where}: {e.strerror or e}; finished rows are kept and a "
              f"rerun resumes", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("obliviate: interrupted; finished rows are kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
