"""`obliviate lm anchors`: write WHP's anchored-terms dictionary for a task's forget set (layer 4)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...grid import add_grid_arguments

DESCRIPTION = ("Find the forget set's idiosyncratic terms -- authors: author names, book titles and places; plays: "
               "character names, play titles and the names and places found only in the forget plays; jsonl: "
               "capitalised words found only in the forget texts -- and map each to a generic replacement. Edit the "
               "file as you like and pass it to WHP with --set whp.anchors=FILE.")


def add_anchors_command(lm_sub) -> None:
    p = lm_sub.add_parser("anchors", help="write WHP's anchored-terms dictionary (JSON) for a task's forget set",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter, description=DESCRIPTION)
    p.add_argument("--task", default="authors", help="task: authors, plays, or jsonl (with --data-root)")
    p.add_argument("--forget", default=None, help="forget spec (None: the task's default)")
    add_grid_arguments(p, "--seed", seed={"help": "seed of the task (the forget set depends on it)"})
    p.add_argument("--model", default="tiny-gpt2",
                   help="the model the grid uses: tiny models use the tiny task settings (e.g. 24 authors)")
    p.add_argument("--data-root", default=None, help="folder with forget.jsonl, retain.jsonl, holdout.jsonl")
    add_grid_arguments(p, "--set", set={"metavar": "task.KEY=VALUE",
                                        "help": "task options, as for `obliviate lm bench` (e.g. task.n_authors=60)"})
    p.add_argument("--out", default="anchors.json", help="the JSON file to write")
    p.set_defaults(func=cmd_anchors)


def cmd_anchors(args) -> int:
    from ...store import atomic_write_json
    from .dictionary import build_anchors
    from ..data.tasks import make_task
    from ..family import TASK_DEFAULT_FORGET, TextFamily
    family = TextFamily(task=args.task, model=args.model, overrides=args.overrides, data_root=args.data_root)
    family.resolve()  # the task options the grids use (tiny models: the tiny settings), all checked
    forget = args.forget or TASK_DEFAULT_FORGET.get(args.task, "forget")
    task = make_task(args.task, forget, seed=args.seed, **family._settings()["options"])
    anchors = build_anchors(task)
    atomic_write_json(Path(args.out), anchors)
    print(json.dumps(anchors, indent=1))
    print(f"{len(anchors)} anchored terms written to {args.out}")
    return 0
