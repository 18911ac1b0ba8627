"""Causal language-model unlearning: tasks, models, methods and evaluation.

    task = obliviate.text.make_task("authors", "forget10", seed=0)
    target, tokenizer, _ = obliviate.text.train_reference("target", task, ModelSpec(), Recipe())
    model, info = obliviate.text.unlearn_once("npo", {}, target, tokenizer, task, Loop(), Recipe())

``obliviate lm bench`` runs whole grids (methods x seeds x forget specs) with MUSE and TOFU metrics.
"""
from .data.tasks import QA, TASKS, LMTask, make_task
from .train import LMCache, ModelSpec, Recipe, encode, finetune, train_reference


def __getattr__(name):
    # the method registry and the grid import the evaluation stack: loaded on first use
    if name in ("METHODS", "create"):
        from . import methods
        return getattr(methods, name)
    if name in ("unlearn_once", "Evaluator"):
        from . import run
        return getattr(run, name)
    if name == "TextFamily":
        from .family import TextFamily
        return TextFamily
    raise AttributeError(name)


__all__ = ["QA", "TASKS", "LMTask", "make_task", "LMCache", "ModelSpec", "Recipe", "encode", "finetune",
           "train_reference", "METHODS", "create", "TextFamily", "unlearn_once", "Evaluator"]
