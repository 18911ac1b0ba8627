"""CLI commands for classifiers: `unlearn`, `bench`, `tune`, `methods`."""
from __future__ import annotations

import argparse
import sys

from ..grid import ENGINE_ARGUMENTS, add_grid_arguments

DEFAULTS = dict(dataset="mnist1d", model="cnn")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=DEFAULTS["dataset"],
                   help="data source: mnist1d, digits, mnist, cifar10, cifar100, imagefolder (see `obliviate datasets`)")
    p.add_argument("--model", default=DEFAULTS["model"], help="architecture: cnn, resnet18, vit")
    p.add_argument("--data-root", default=None, help="folder with the data files of file-based sources")
    p.add_argument("--train-size", type=int, default=None, help="keep a stratified subset of this many training samples")
    add_grid_arguments(p, "--set", "--runs", "--cpu", set={
        "help": "override a preset value: lotus.alpha=4, recipe.epochs=30, model.width=32, dataset.num_samples=4000"})
    p.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"],
                   help="mixed precision for training and unlearning (accelerators)")
    add_grid_arguments(p, "--no-progress")
    p.add_argument("--prune", type=float, default=None, metavar="SPARSITY",
                   help="prune first, then unlearn: global L1-magnitude pruning of convolution weights to this "
                        "sparsity (e.g. 0.95); original and gold models are sparse with the same mask")
    p.add_argument("--prune-rounds", type=int, default=1,
                   help="pruning rounds: 1 = one-shot (OMP), more = iterative pruning with rewinding (IMP)")
    add_grid_arguments(p, *ENGINE_ARGUMENTS)


def add_commands(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("unlearn", help="unlearn a forget set from a classifier and evaluate it against the gold model",
                       description="Train (or load from cache) the original and the gold model, run one unlearning "
                                   "method, evaluate it, and write the result row to RUNS/NAME/.", formatter_class=fmt)
    _common(p)
    p.add_argument("--forget", default="random:0.1", help="forget spec: random:F, class:C[,C], indices:FILE, worst-case:F")
    add_grid_arguments(p, "--method", "--seed", "--name", "--json", method={"default": "lotus"},
                       seed={"help": "seed of the forget set, the models and the method"},
                       name={"help": "run directory name (default: unlearn-METHOD)"})
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("bench", help="run a grid of methods x seeds x forget specs and write tables",
                       description="Run methods x seeds x forget specs on one dataset and model. Finished rows are "
                                   "kept: rerunning the same command resumes an interrupted grid.", formatter_class=fmt)
    _common(p)
    p.add_argument("--forget", nargs="+", default=["random:0.1"], help="one or more forget specs")
    add_grid_arguments(p, "--methods", "--seeds", "--name", methods={"default": ["lotus"]},
                       name={"default": "default", "help": "run directory name under RUNS"})
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("tune", help="search a method's hyperparameters without the gold model or the test split",
                       description="Optuna search (TPE) over each method's hyperparameters on one dataset, model and "
                                   "forget spec, scored by a retrain-free criterion (original model, D_r, D_f, D_u "
                                   "only). The study is stored in RUNS/NAME/study.db: rerunning the same command "
                                   "resumes it. Writes the best values as a preset YAML (merged into --out).",
                       formatter_class=fmt)
    _common(p)
    p.add_argument("--forget", default="random:0.1", help="forget spec to tune on: random:F, class:C[,C], ...")
    add_grid_arguments(p, "--methods", methods={"default": ["lotus"]})
    p.add_argument("--trials", type=int, default=20, help="trials per method (finished trials of a resumed study count)")
    p.add_argument("--timeout", type=float, default=None, help="time budget per method, in seconds")
    add_grid_arguments(p, "--seeds", "--name", seeds={"help": "average the objective over seeds 0..N-1"},
                       name={"help": "run directory under RUNS (default: tune-DATASET-MODEL-KIND)"})
    p.add_argument("--out", default=None, help="preset YAML to write or merge into (default: RUNS/NAME/preset.yaml)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("methods", help="list every registered method with its paper", formatter_class=fmt)
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("datasets", help="list the classifier data sources and models", formatter_class=fmt)
    p.set_defaults(func=cmd_datasets)


def family(args):
    from .family import VisionFamily
    return VisionFamily(dataset=args.dataset, model=args.model, overrides=args.overrides, data_root=args.data_root,
                        train_size=args.train_size, cpu=args.cpu, mixed_precision=args.mixed_precision,
                        progress=not args.no_progress, prune=args.prune, prune_rounds=args.prune_rounds,
                        retrain_corrupt=args.retrain_corrupt)


def cmd_unlearn(args) -> int:
    from ..cli import show_run
    from ..grid import grid_options_from_args, run_grid
    options = grid_options_from_args(args, [args.forget], [args.method], [args.seed],
                                     f"unlearn-{args.method}" if args.name is None else args.name)
    result = run_grid(family(args), options, log=lambda s: print(s, file=sys.stderr))
    cell = result.plan.cells[0]
    return show_run(result.store, cell.jobs[-1].run_id, args.json)


def cmd_bench(args) -> int:
    from ..grid import grid_options_from_args, run_grid
    store = run_grid(family(args), grid_options_from_args(args, args.forget, args.methods, list(range(args.seeds)),
                                                          args.name)).store
    print((store.root / "table.md").read_text())
    print(f"rows and tables written to {store.root}/")
    return 0


def cmd_tune(args) -> int:
    from ..errors import ObliviateError
    from .tune import TuneConfig, tune
    if args.prune is not None:
        raise ObliviateError("tune does not search pruned models yet: drop --prune")
    cfg = TuneConfig(dataset=args.dataset, model=args.model, forget=args.forget, methods=args.methods,
                     trials=args.trials, timeout=args.timeout, seeds=list(range(args.seeds)), name=args.name,
                     root=args.runs, out=args.out, overrides=args.overrides, data_root=args.data_root,
                     train_size=args.train_size, cpu=args.cpu, progress=not args.no_progress)
    best = tune(cfg, log=lambda s: print(s, file=sys.stderr))
    print(f"preset written to {cfg.output}" if best else "no trial finished; no preset written")
    return 0 if best else 1


def cmd_methods(args) -> int:
    from ..methods_list import all_methods
    for family, name, paper, summary in all_methods():
        print(f"{name:16s} [{family}] {summary}\n{'':16s}   {paper}")
    return 0


def cmd_datasets(args) -> int:
    from .data import DATASETS
    from .models import MODELS
    for kind, registry in (("dataset", DATASETS), ("model", MODELS)):
        for name, fn in registry.items():
            doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            print(f"{kind:8s} {name:12s} {doc}")
    return 0
