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


def add_command_group(sub, name: str, help: str, description: str):
    """A command with commands of its own (``obliviate lm ...``, ``obliviate vlm ...``); returns their subparsers. Given
    alone, it prints its help (exit status 2)."""
    group = sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                           description=description)
    commands = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    group.set_defaults(func=lambda args: (group.print_help(), 2)[1])
    return commands


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
