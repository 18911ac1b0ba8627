"""LoTUS on class forgetting, epoch by epoch: the forget accuracy Acc(S, D_f) and the retain-subset accuracy before
each epoch (and after the last), D_u's kept-class accuracy, the epoch the retrain-free criterion keeps, and the kept model's
forgotten / kept test accuracy against the gold model's.

    .venv/bin/python benchmarks/lotus_class_epochs.py --dataset mnist1d --forget class:3 --seeds 3 [--epochs 30] [--lr 1e-3]

Uses the class preset (presets/{dataset}-{model}-class.yaml over {dataset}-{model}.yaml).
"""
from __future__ import annotations

import argparse

from obliviate.loop import Loop
from obliviate.presets import load_preset
from obliviate.task import ForgetSpec
from obliviate.vision import Recipe, evaluate, make_task, train_reference, unlearn
from obliviate.vision.methods import create


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--model", default="cnn")
    p.add_argument("--forget", default="class:3")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    args = p.parse_args()
    preset = load_preset(args.dataset, args.model, ForgetSpec.parse(args.forget).kind)
    hp = dict(preset["methods"].get("lotus", {}))
    if args.epochs:
        hp["epochs"] = args.epochs
    if args.lr:
        hp["lr"] = args.lr
    print(f"lotus hyperparameters: {hp}")
    loop = Loop(cpu=True, progress=False)
    recipe = Recipe.from_dict(preset["recipe"])
    for seed in range(args.seeds):
        task = make_task(args.dataset, args.forget, seed=seed, **preset["dataset"])
        original, _ = train_reference("original", task, args.model, recipe, loop, model_kwargs=preset["model"])
        gold, _ = train_reference("gold", task, args.model, recipe, loop, model_kwargs=preset["model"])
        method = create("lotus", **hp)
        model, _ = unlearn(method, original, task, loop)
        s, g = evaluate(model, task, loop=loop), evaluate(gold, task, loop=loop)
        accs = " ".join(f"{h['acc_forget']:.2f}" for h in method.history_)
        rets = " ".join(f"{h['acc_retain_subset']:.3f}" for h in method.history_)
        print(f"seed {seed}: Acc(S, D_f) per evaluation: {accs}")
        kept = " ".join(f"{h['acc_unseen_kept']:.3f}" for h in method.history_)
        print(f"seed {seed}: retain-subset accuracy:     {rets}")
        print(f"seed {seed}: D_u kept-class accuracy:    {kept}")
        print(f"seed {seed}: kept epoch {method.chosen_epoch_} of {len(method.history_) - 1}; forget {s['acc_forget']:.3f} "
              f"(gold {g['acc_forget']:.3f}), test forgotten {s['acc_test_forgotten']:.3f} (gold "
              f"{g['acc_test_forgotten']:.3f}), test kept {s['acc_test_kept']:.3f} (gold {g['acc_test_kept']:.3f}, "
              f"original {evaluate(original, task, loop=loop)['acc_test_kept']:.3f})")


if __name__ == "__main__":
    main()
