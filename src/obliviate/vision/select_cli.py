"""CLI command `select-forget`: compute a worst-case forget set and write it as an index file."""
from __future__ import annotations

import argparse
import sys

from ..grid import add_grid_arguments


def add_commands(sub) -> None:
    p = sub.add_parser("select-forget", help="select a worst-case forget set (Fan et al., ECCV 2024) as an index file",
                       description="Train (or load from cache) the original model with the preset recipe, run the "
                                   "bi-level worst-case selection, and write the chosen training indices, one per "
                                   "line, to OUT. Use the file as `--forget indices:OUT`.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="mnist1d", help="data source (see `obliviate unlearn --help`)")
    p.add_argument("--model", default="cnn", help="architecture: cnn, resnet18, vit")
    p.add_argument("--data-root", default=None, help="folder with the data files of file-based sources")
    p.add_argument("--train-size", type=int, default=None, help="keep a stratified subset of this many training samples")
    add_grid_arguments(p, "--set", set={"help": "override a preset value: recipe.epochs=30, model.width=32, "
                                                "dataset.num_samples=4000"})
    p.add_argument("--size", type=float, default=0.1,
                   help="forget-set size: a fraction (< 1) of the training samples (or classes), or a count")
    add_grid_arguments(p, "--method", method={"default": "finetune",
                                              "help": "lower-level unlearning: finetune, l1-sparse, neggrad, neggrad+"})
    p.add_argument("--classwise", action="store_true", help="select whole classes instead of samples")
    p.add_argument("--epochs", type=int, default=10, help="selection epochs")
    p.add_argument("--unroll-epochs", type=int, default=10, help="signSGD epochs of the lower level per selection epoch")
    add_grid_arguments(p, "--seed", seed={"help": "seed of the data split, the original model and the selection"})
    p.add_argument("--out", required=True, help="index file to write")
    add_grid_arguments(p, "--cpu", "--no-progress")
    p.set_defaults(func=cmd_select_forget)


def cmd_select_forget(args) -> int:
    from ..loop import Loop
    from ..presets import apply_overrides, load_preset
    from .data import make_task
    from .models import MODELS
    from .selection import WorstCaseSelector, cached_selection, write_indices
    from .train import Recipe

    selector = WorstCaseSelector(size=args.size, method=args.method, classwise=args.classwise, epochs=args.epochs,
                                 unroll_epochs=args.unroll_epochs, seed=args.seed)  # checks the settings first
    MODELS.get(args.model)
    preset = apply_overrides(load_preset(args.dataset, args.model), args.overrides)
    recipe = Recipe.from_dict(preset["recipe"])
    task = make_task(args.dataset, "random:0.1", seed=args.seed, data_root=args.data_root, train_size=args.train_size,
                     **preset["dataset"])
    selector.count(task.num_classes if args.classwise else len(task.train_labels))
    loop = Loop(cpu=args.cpu, progress=not args.no_progress)
    idx = cached_selection(selector, task, args.model, preset["model"], recipe, loop)
    write_indices(args.out, idx, f"worst-case forget set ({'class-wise' if args.classwise else 'data-wise'}, "
                                 f"lower level {args.method}) on {args.dataset}/{args.model}, seed {args.seed}")
    print(f"wrote {len(idx)} training indices to {args.out}; use --forget indices:{args.out}", file=sys.stderr)
    return 0
