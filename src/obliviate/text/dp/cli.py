"""`obliviate lm dp-base`: train (or load) DP2Unlearning's DP base model and report the privacy spent (layer 4)."""
from __future__ import annotations

import argparse
import json
import sys

from ...grid import add_grid_arguments

DESCRIPTION = ("Train the unlearning-ready base model of dp2u with DP-SGD (Opacus) on the forget + retain data of a "
               "task, cache it with the privacy spent, fine-tune the deployed model from it on all the data, and "
               "evaluate both. `obliviate lm unlearn --method dp2u` with the same settings then reuses the cached "
               "base. Settings: --set dp2u.epsilon=8 dp2u.delta=1e-5 dp2u.max_grad_norm=1.0 dp2u.dp_epochs=... (see "
               "`obliviate methods`).")


def add_dp_command(lm_sub, common, family) -> None:
    """``common`` adds the options of `lm bench` and `lm unlearn`, ``family(args)`` builds their TextFamily."""
    p = lm_sub.add_parser("dp-base", help="train DP2Unlearning's DP-SGD base model on all the data (cached)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter, description=DESCRIPTION)
    common(p)
    p.add_argument("--forget", default=None, help="forget spec (None: the task's default)")
    add_grid_arguments(p, "--seed", "--json", seed={"help": "seed of the task and the models"},
                       json={"help": "print the report as one JSON object"})
    p.set_defaults(func=lambda args: cmd_dp_base(args, family))


def cmd_dp_base(args, family) -> int:
    import copy

    from ...loop import Loop
    from ..data.tasks import make_task
    from ..family import TASK_DEFAULT_FORGET
    from ..methods import UnlearnData, create
    from ..methods.dp2u import all_data
    from ..run import Evaluator
    from ..train import LMCache, encode, finetune, train_reference
    from ...grid import configure_torch
    configure_torch(args.threads)  # --threads: as the grid does, fixed (CPU results depend on it)
    forget = args.forget or TASK_DEFAULT_FORGET.get(args.task, "forget")
    fam = family(args)
    fam.resolve()
    settings = fam._settings()
    recipe, spec = settings["recipe"], settings["spec"]
    method = create("dp2u", **fam.preset()["methods"].get("dp2u", {}))
    loop = Loop(cpu=args.cpu, progress=not args.no_progress)
    cache = LMCache(retrain_corrupt=args.retrain_corrupt)
    task = make_task(args.task, forget, seed=args.seed, **settings["options"])
    target, tokenizer, _ = train_reference("target", task, spec, recipe, loop, cache)
    data = UnlearnData(forget=encode(tokenizer, task.forget_examples, recipe.max_length),
                       retain=encode(tokenizer, task.retain_examples, recipe.max_length), tokenizer=tokenizer,
                       seed=task.seed)
    base, privacy, seconds = method.base(target, data, loop)
    print(f"DP base: epsilon {privacy['epsilon']:.3f} at delta {privacy['delta']:g} ({privacy['accountant']}), "
          f"noise multiplier {privacy['noise_multiplier']:.3f}, {privacy['steps']} steps, trained in "
          f"{seconds:.1f} s", file=sys.stderr)
    key = {"role": "dp-deployed", "base": method.dp_config().__dict__, "task": task.fingerprint("target"),
           "model": spec.key(), "recipe": recipe.__dict__}
    deployed, _, deployed_seconds = cache.get_or_train(
        key, lambda: (finetune(copy.deepcopy(base), tokenizer, task.target_examples, recipe, loop, seed=task.seed,
                               desc="dp-deployed"), tokenizer), loop)  # a copy: the DP base is evaluated below
    evaluator = Evaluator(task, loop, args.eval_limit)
    report = {"privacy": privacy, "dp_base_seconds": seconds, "deployed_seconds": deployed_seconds,
              "n_examples": len(all_data(data))}
    for name, model in (("target", target), ("dp_base", base), ("dp_deployed", deployed)):
        m = evaluator(model, tokenizer)
        report[name] = {k: m[k] for k in ("utility", "knowmem_f", "knowmem_r", "verbmem_f") if k in m}
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(json.dumps(report, indent=1, sort_keys=True))
    return 0
