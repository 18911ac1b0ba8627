"""CLI commands for CLIP-style models: `obliviate vlm unlearn` (and `obliviate vlm bench`, on the grid engine)."""
from __future__ import annotations

import argparse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="domain-mnist",
                   help="domain-mnist (offline), office-home, domainnet, mini-domainnet, imagenet-sketch "
                        "(the last four read --data-root)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset in its published layout")
    p.add_argument("--model", default="tiny-clip",
                   help="tiny-clip (pre-trained here on domain-mnist captions, cached) or a local Hugging Face "
                        "CLIPModel folder (nothing is downloaded)")
    p.add_argument("--shots", type=int, default=8, help="training images per (class, domain)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="override a method's hyperparameter: adu.gamma=10, domain-baseline.epochs=20")
    p.add_argument("--runs", default="runs", help="folder that holds run directories")
    p.add_argument("--cpu", action="store_true", help="use the CPU even if an accelerator is available")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_commands(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    vlm = sub.add_parser("vlm", help="vision-language (CLIP-style) domain unlearning: unlearn, bench",
                         formatter_class=fmt,
                         description="Approximate domain unlearning for CLIP-style models: forget how to recognise "
                                     "classes in some image domains (e.g. sketches) while keeping the others.")
    vlm_sub = vlm.add_subparsers(dest="vlm_command", metavar="COMMAND")
    vlm.set_defaults(func=lambda args: (vlm.print_help(), 2)[1])

    p = vlm_sub.add_parser("unlearn", help="one unlearning run: Mem, For, H and per-domain accuracy",
                           formatter_class=fmt)
    _common(p)
    p.add_argument("--forget", default="domain:sketch", help="domain:NAME[,NAME] or, for bbf, class:C[,C]")
    p.add_argument("--method", default="adu", help="method (see `obliviate methods`)")
    p.add_argument("--seed", type=int, default=0, help="seed of the few-shot draw and the method")
    p.add_argument("--name", default=None, help="run directory name under RUNS (None: vlm-unlearn-METHOD)")
    p.add_argument("--json", action="store_true", help="print the result row as one JSON object on stdout")
    p.set_defaults(func=cmd_unlearn)


def method_overrides(method: str, overrides) -> dict:
    """Hyperparameters for ``method`` from --set METHOD.KEY=VALUE items (other methods' items are ignored)."""
    from ..presets import apply_overrides
    preset = apply_overrides({"methods": {}}, overrides, sections=(), example="adu.gamma=10")
    return dict(preset["methods"].get(method, {}))


def cmd_unlearn(args) -> int:
    import json
    from ..loop import Loop
    from ..store import RunStore
    from .data import make_task
    from .methods import METHODS, create
    from .run import check_model, unlearn_row
    METHODS.get(args.method)
    params = method_overrides(args.method, args.overrides)
    create(args.method, **params)
    check_model(args.model)
    task = make_task(args.dataset, args.forget, seed=args.seed, shots=args.shots, data_root=args.data_root)
    store = RunStore(f"{args.runs}/{args.name or f'vlm-unlearn-{args.method}'}")
    loop = Loop(cpu=args.cpu, progress=not args.no_progress)
    row = unlearn_row(args.method, params, task, args.model, loop,
                      figure=store.root / "figures" / f"features-{args.method}-s{args.seed}.png")
    store.write_row(row)
    if args.json:
        print(json.dumps(row, sort_keys=True))
    else:
        m, o = row["metrics"], row["original"]
        print(f"{args.method} on {task.dataset}, forget {task.forget}, seed {task.seed}")
        print("| model | Mem | For | H | " + " | ".join(task.domain_names) + " |")
        print("|---" * (4 + task.num_domains) + "|")
        for name, s in (("zero-shot", o), (args.method, m)):
            print(f"| {name} | {100 * s['mem']:.1f} | {100 * s['for']:.1f} | {100 * s['h']:.1f} | "
                  + " | ".join(f"{100 * s[f'acc/{d}']:.1f}" for d in task.domain_names) + " |")
        print(f"row and figure written to {store.root}/")
    return 0
