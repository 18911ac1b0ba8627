"""CLI commands for CLIP-style models: `obliviate vlm bench` and `obliviate vlm unlearn`, on the grid engine."""
from __future__ import annotations

import argparse

from ..cli import add_command_group
from ..grid import add_grid_arguments


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="domain-mnist",
                   help="domain-mnist (offline), office-home, domainnet, mini-domainnet, imagenet-sketch "
                        "(the last four read --data-root)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset in its published layout")
    p.add_argument("--model", default="tiny-clip",
                   help="tiny-clip (pre-trained here on domain-mnist captions, cached) or a local Hugging Face "
                        "CLIPModel folder (nothing is downloaded)")
    p.add_argument("--shots", type=int, default=8, help="training images per (class, domain)")
    add_grid_arguments(p, "--set", set={"metavar": "METHOD.KEY=VALUE", "help": "override a method's hyperparameter: "
                                                                           "adu.gamma=10, domain-baseline.epochs=20"})
    add_grid_arguments(p)


def add_commands(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    vlm_sub = add_command_group(sub, "vlm", help="vision-language (CLIP-style) domain unlearning: bench, unlearn",
                                description="Approximate domain unlearning for CLIP-style models: forget how to "
                                            "recognise classes in some image domains (e.g. sketches) while keeping "
                                            "the others.")

    p = vlm_sub.add_parser("bench", help="run a grid of methods x seeds x forget specs and write runs/NAME/table.md",
                           formatter_class=fmt,
                           description="Load (or pre-train once, cached) the CLIP model, evaluate it zero-shot (the "
                                       "original row), run every method on the few-shot task, and write one JSON row "
                                       "per run, table.md and report.html. Rerunning the same command resumes.")
    _common(p)
    p.add_argument("--forget", nargs="+", default=["domain:sketch"],
                   help="forget specs: domain:NAME[,NAME], class:C (bbf), or each (one cell per domain)")
    add_grid_arguments(p, "--methods", "--seeds", "--name",
                       methods={"help": "method names, comma lists, all, the ablation variants adu+instapg / adu+ddl, "
                                        "or ablation (domain-baseline, adu+instapg, adu+ddl, adu)"},
                       name={"help": "run directory name under RUNS (None: vlm-DATASET)"})
    p.set_defaults(func=cmd_bench)

    p = vlm_sub.add_parser("unlearn", help="one unlearning run: Mem, For, H and per-domain accuracy",
                           formatter_class=fmt)
    _common(p)
    p.add_argument("--forget", default="domain:sketch", help="domain:NAME[,NAME] or, for bbf, class:C[,C]")
    add_grid_arguments(p, "--method", "--seed", "--name", "--json",
                       method={"default": "adu", "help": "method (see `obliviate methods`) or adu+instapg / adu+ddl"},
                       seed={"help": "seed of the few-shot draw and the method"},
                       name={"help": "run directory name under RUNS (None: vlm-unlearn-METHOD)"})
    p.set_defaults(func=cmd_unlearn)


def family(args):
    from .family import VlmFamily
    return VlmFamily(dataset=args.dataset, model=args.model, data_root=args.data_root, shots=args.shots,
                     overrides=args.overrides, cpu=args.cpu, progress=not args.no_progress,
                     retrain_corrupt=args.retrain_corrupt)


def cmd_bench(args) -> int:
    from ..grid import grid_options_from_args, run_grid
    options = grid_options_from_args(args, args.forget, args.methods, list(range(args.seeds)),
                                     args.name or f"vlm-{args.dataset}")
    store = run_grid(family(args), options).store
    print((store.root / "table.md").read_text())
    print(f"rows, tables and report.html written to {store.root}/")
    return 0


def cmd_unlearn(args) -> int:
    import sys
    from ..cli import show_run
    from ..grid import grid_options_from_args, run_grid
    options = grid_options_from_args(args, [args.forget], [args.method], [args.seed],
                                     args.name or f"vlm-unlearn-{args.method}")
    result = run_grid(family(args), options, log=lambda s: print(s, file=sys.stderr))
    return show_run(result.store, result.plan.cells[-1].jobs[-1].run_id, args.json)
