"""`obliviate lm restor`: RESTOR's knowledge-recovery evaluation of every language-model method (layer 4)."""
from __future__ import annotations

import argparse

from ...grid import add_grid_arguments

DESCRIPTION = """RESTOR (Rezaei et al. 2024, arXiv 2411.00204): clean model -> corrupted model (trained further on
documents stating wrong facts about a few entities, mixed with correct documents) -> each method unlearns the
corruption documents (forget set; the correct documents are the retain set). Reports per method and per entity the
fact accuracy of the clean, corrupted and unlearned models (greedy answer states the value; no external judge), the
rate of corrupted answers and of answers stating NEITHER value (forgetting both is not recovery), the log-probability
of the clean, corrupted and a random answer, and the recovery ratio (acc_u - acc_corr) / (acc_clean - acc_corr).
Writes rows, table.md and restor.png to RUNS/NAME/; rerunning resumes.

--task authors (offline): the authors task's target is the clean model; restor.n_corrupt authors get one consistent
wrong value (another author's) for each of restor.attributes.

--task jsonl --data-root DIR: clean.jsonl (the clean model's training documents and the correct documents, lines
{"text": ...} or {"question": ..., "answer": ...}), corruption.jsonl (the wrong-fact documents, same kinds),
probes.jsonl (lines {"entity", "question", "clean", "corrupted"}, optional "random", "clean_answer",
"corrupted_answer", "random_answer"; a line without "corrupted" is a retain probe whose accuracy is the utility).

Settings (one --set each, defaults shown): restor.n_corrupt=4, restor.attributes=city,genre,award,language (of
city, year, genre, father, mother, award, theme, language, children, pub1), restor.corrupt_epochs=10,
restor.corrupt_lr (default: the recipe's), restor.max_new_tokens=24; and every method, recipe, model and task
setting of `lm bench` (npo.lr=..., recipe.epochs=..., task.n_authors=...)."""


def add_restor_command(lm_sub) -> None:
    p = lm_sub.add_parser("restor", help="RESTOR: does unlearning corrupted facts recover the clean answers?",
                          formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION)
    p.add_argument("--task", default="authors", choices=["authors", "jsonl"],
                   help="authors (offline, built from the authors task) or jsonl (files under --data-root)")
    p.add_argument("--data-root", default=None, help="jsonl: folder with clean.jsonl, corruption.jsonl, probes.jsonl")
    p.add_argument("--model", default="tiny-gpt2", help="tiny-gpt2, tiny-llama, or a local Hugging Face model folder")
    add_grid_arguments(p, "--methods", "--seeds", "--set", set={
        "help": "restor.n_corrupt=4, npo.lr=1e-4, recipe.epochs=10, task.n_authors=24, model.n_embd=64"})
    p.add_argument("--lora", type=int, default=0, help="LoRA rank for unlearning (0: full fine-tuning)")
    p.add_argument("--collapse-threshold", type=float, default=0.5,
                   help="flag a run whose utility falls below this fraction of the clean model's")
    p.add_argument("--eval-limit", type=int, default=80, help="at most this many retain probes are evaluated")
    add_grid_arguments(p, "--name", name={"help": "run directory name under RUNS (None: restor-TASK)"})
    add_grid_arguments(p)
    p.set_defaults(func=cmd_restor)


def split_overrides(overrides):
    """(``restor.*`` settings as a dict, the other overrides)."""
    from ...errors import ObliviateError
    restor, rest = {}, []
    for item in overrides:
        if item.startswith("restor."):
            key, eq, value = item[len("restor."):].partition("=")
            if not eq or not key:
                raise ObliviateError(f"--set {item!r}: expected restor.KEY=VALUE, e.g. restor.n_corrupt=4")
            restor[key] = value
        else:
            rest.append(item)
    return restor, rest


def cmd_restor(args) -> int:
    from ...grid import grid_options_from_args, run_grid
    from .family import FORGET, RestorFamily
    restor, overrides = split_overrides(args.overrides)
    family = RestorFamily(task=args.task, model=args.model, overrides=overrides, data_root=args.data_root,
                          lora=args.lora, collapse_threshold=args.collapse_threshold, eval_limit=args.eval_limit,
                          cpu=args.cpu, progress=not args.no_progress, retrain_corrupt=args.retrain_corrupt,
                          restor=restor)
    options = grid_options_from_args(args, [FORGET], args.methods, list(range(args.seeds)),
                                     f"restor-{args.task}" if args.name is None else args.name)
    store = run_grid(family, options).store
    print((store.root / "table.md").read_text())
    print(f"rows, table.md and restor.png written to {store.root}/")
    return 0
