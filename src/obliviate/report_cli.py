"""CLI command `report`: redraw the tables and reports of a benchmark directory from its rows, without rerunning."""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import ObliviateError


def add_commands(sub) -> None:
    p = sub.add_parser("report", help="redraw table.md, report.md and report.html of a benchmark from its rows",
                       description="Read the result rows (and per-sample outputs) of RUN_DIR and write RUN_DIR/table.md, "
                                   "RUN_DIR/report.md with figures under RUN_DIR/figures/, and a self-contained "
                                   "RUN_DIR/report.html. Nothing is rerun. For a language-model grid, redraws "
                                   "RUN_DIR/table.md.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a benchmark directory, e.g. runs/default")
    p.add_argument("--no-plots", action="store_true", help="write the tables and scores only, without figures")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from .report import write_report
    from .store import RunStore
    root = Path(args.run_dir)
    if not root.is_dir():
        raise ObliviateError(f"{root} is not a directory; give a benchmark directory such as runs/default")
    if not (root / "rows").is_dir():
        raise ObliviateError(f"{root} has no rows/ folder: it is not a benchmark directory written by `obliviate bench`")
    from .grid import labelled_rows
    store = RunStore(root)
    rows = labelled_rows(store.rows())
    families = {r.get("family", "vision") for r in rows}
    if families == {"text"}:  # language-model grids have tables of their own (MUSE, TOFU), no figures yet
        from .text.tables import write_tables
        write_tables(store, rows)
        print(root / "table.md")
        return 0
    if families == {"restor"}:  # RESTOR: its recovery table and figure
        from .text.restor.report import write_restor_report
        write_restor_report(store, rows)
        print(root / "table.md")
        print(root / "restor.png")
        return 0
    if families == {"vlm"}:  # vision-language grids: Mem / For / H tables and feature figures of their own
        from .vlm.tables import write_tables
        write_tables(store, rows)
        print(root / "table.md")
        print(root / "report.html")
        return 0
    for path in write_report(store, plots=not args.no_plots, rows=rows).values():
        print(path)
    return 0
