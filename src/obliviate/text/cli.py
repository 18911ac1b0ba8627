"""CLI commands for language models: `obliviate lm bench` and `obliviate lm unlearn`."""
from __future__ import annotations

import argparse
import sys

from ..cli import add_command_group
from ..grid import add_grid_arguments


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="authors",
                   help="task: authors (fictitious authors, TOFU-like), plays (Shakespeare, MUSE-like), "
                        "jsonl (your forget/retain/holdout .jsonl files under --data-root), tofu (the published "
                        "locuslab/TOFU JSON files under --data-root), muse-news / muse-books (MUSE's published files "
                        "under --data-root)")
    p.add_argument("--model", default="tiny-gpt2",
                   help="tiny-gpt2, tiny-llama (built from a config, BPE tokenizer trained on the task), or a local "
                        "Hugging Face model directory (nothing is downloaded)")
    p.add_argument("--gguf-file", default=None, help="a GGUF file inside the --model directory to load instead")
    p.add_argument("--data-root", default=None,
                   help="data folder: forget.jsonl, retain.jsonl, holdout.jsonl (jsonl); TOFU's JSON files (tofu); "
                        "MUSE's raw/, verbmem/, knowmem/ (muse-news, muse-books)")
    add_grid_arguments(p, "--set", set={"help": "override a setting: npo.beta=0.2, recipe.epochs=10, model.n_embd=64, "
                                                "task.n_authors=60"})
    p.add_argument("--lora", type=int, default=0, help="LoRA rank for unlearning (0: full fine-tuning); the target "
                                                       "and gold models use recipe.lora_r")
    p.add_argument("--eval-every-epoch", action="store_true",
                   help="evaluate after every unlearning epoch and report the epoch that knows least of the forget "
                        "set among those keeping >= --select-keep of the target's utility (retain fact accuracy); "
                        "the gold model is not read; the row records every epoch and the selected one")
    p.add_argument("--select-keep", type=float, default=0.9,
                   help="with --eval-every-epoch: the fraction of the target's utility a selected epoch must keep")
    p.add_argument("--collapse-threshold", type=float, default=0.5,
                   help="flag a run as collapsed when its retain utility falls below this fraction of the target's")
    p.add_argument("--eval-limit", type=int, default=80, help="evaluate at most this many items per split")
    add_grid_arguments(p)


def add_commands(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    lm_sub = add_command_group(sub, "lm", help="language-model unlearning: bench, unlearn, dp-base, restor",
                               description="Unlearning for causal language models (GA, GradDiff, KL, NPO, SimNPO, RMU, "
                                           "task vectors) with MUSE and TOFU metrics against a gold model trained "
                                           "without the forget set.")

    p = lm_sub.add_parser("bench", help="run a grid of methods x seeds x forget specs and write runs/NAME/table.md",
                          formatter_class=fmt,
                          description="Train (or load from cache) the target and gold models, run every method, "
                                      "evaluate, and write one JSON row per run. Rerunning the same command resumes. "
                                      "The tiny models use small settings that run on a CPU (authors: 24 trained + "
                                      "6 holdout authors, 40 epochs of fine-tuning; loss methods: lr 3e-4, 10 "
                                      "epochs); a "
                                      "local pretrained model uses the methods' paper defaults. Change any of them "
                                      "with --set.")
    _common(p)
    p.add_argument("--forget", nargs="+", default=None,
                   help="forget specs (None: forget10 for authors, forget for plays and jsonl). authors: forget01, "
                        "forget05, forget10. plays: forget, scale (scalability series), sustain (sequential "
                        "requests), or one step scaleK / sustainK")
    add_grid_arguments(p, "--methods", "--seeds", "--name",
                       name={"help": "run directory name under RUNS (None: lm-TASK)"})
    p.set_defaults(func=cmd_bench)

    p = lm_sub.add_parser("unlearn", help="one unlearning run, evaluated against the gold model", formatter_class=fmt)
    _common(p)
    p.add_argument("--forget", default=None,
                   help="forget spec (None: the task's default, see `obliviate lm bench --help`)")
    add_grid_arguments(p, "--method", "--seed", "--name", "--json", method={"default": "npo"},
                       seed={"help": "seed of the task, the models and the method"},
                       name={"help": "run directory name (None: lm-unlearn-METHOD)"})
    p.set_defaults(func=cmd_unlearn)

    # the commands beside the code they drive; they get what they share with bench and unlearn from here (this module
    # imports them, never the other way round)
    from .anchors.cli import add_anchors_command
    from .dp.cli import add_dp_command
    from .restor.cli import add_restor_command
    add_anchors_command(lm_sub)
    add_dp_command(lm_sub, _common, family)
    add_restor_command(lm_sub)


def family(args):
    from .family import TextFamily
    return TextFamily(task=args.task, model=args.model, gguf_file=args.gguf_file, overrides=args.overrides,
                      data_root=args.data_root, lora=args.lora, eval_every_epoch=args.eval_every_epoch,
                      collapse_threshold=args.collapse_threshold, select_keep=args.select_keep,
                      eval_limit=args.eval_limit, cpu=args.cpu, progress=not args.no_progress,
                      retrain_corrupt=args.retrain_corrupt)


def _forgets(args, forgets):
    from .family import TASK_DEFAULT_FORGET
    return forgets if forgets else [TASK_DEFAULT_FORGET.get(args.task, "forget")]


def cmd_bench(args) -> int:
    from ..grid import grid_options_from_args, run_grid
    options = grid_options_from_args(args, _forgets(args, args.forget), args.methods, list(range(args.seeds)),
                                     f"lm-{args.task}" if args.name is None else args.name)
    store = run_grid(family(args), options).store
    print((store.root / "table.md").read_text())
    print(f"rows and tables written to {store.root}/")
    return 0


def cmd_unlearn(args) -> int:
    from ..cli import show_run
    from ..grid import grid_options_from_args, run_grid
    options = grid_options_from_args(args, _forgets(args, [args.forget] if args.forget else None), [args.method],
                                     [args.seed], f"lm-unlearn-{args.method}" if args.name is None else args.name)
    result = run_grid(family(args), options, log=lambda s: print(s, file=sys.stderr))
    return show_run(result.store, result.plan.cells[-1].jobs[-1].run_id, args.json)
