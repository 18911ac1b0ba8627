"""Training recipes and the original / gold models, trained through the one loop and cached by what produced them."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..errors import ObliviateError
from ..registry import fields_from_dict
from ..loop import Loop
from ..store import ModelCache
from ..task import Task
from .models import check_output_width, make_model


@dataclass
class Recipe:
    """How a model is trained from scratch (original and gold models)."""
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "adamw"      # adamw | sgd | adam
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"      # cosine | constant

    def __post_init__(self):
        if self.optimizer not in ("adamw", "sgd", "adam"):
            raise ObliviateError(f"recipe.optimizer: unknown optimizer {self.optimizer!r}; use sgd, adam or adamw")
        if self.schedule not in ("cosine", "constant"):
            raise ObliviateError(f"recipe.schedule: unknown schedule {self.schedule!r}; use cosine or constant")

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Recipe":
        return fields_from_dict(cls, d, "recipe")


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ObliviateError(f"unknown optimizer {name!r}; use sgd, adam or adamw")


def cross_entropy_step(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch[0], batch[1]
    return F.cross_entropy(model(x), y)


def train_model(model: nn.Module, dataset: Dataset, recipe: Recipe, loop: Loop, seed: int = 0,
                desc: str = "train") -> nn.Module:
    """Train ``model`` with cross-entropy on ``dataset`` following ``recipe``."""
    loop.seed(seed)
    opt = make_optimizer(model.parameters(), recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.momentum)
    sched = None
    if recipe.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, recipe.epochs))
    elif recipe.schedule != "constant":
        raise ObliviateError(f"unknown schedule {recipe.schedule!r}; use cosine or constant")
    loader = loop.loader(dataset, recipe.batch_size, shuffle=True, seed=seed)
    return loop.fit(model, opt, loader, cross_entropy_step, recipe.epochs, desc=desc, scheduler=sched)


def _key(role: str, task: Task, model_name: str, model_kwargs: dict, recipe: Recipe, extra: Optional[dict]) -> dict:
    fp = task.fingerprint()
    if role == "original":  # the original model does not depend on what will be forgotten
        fp = {k: v for k, v in fp.items() if k not in ("forget", "forget_hash")}
    return {"role": role, "task": fp, "model": model_name, "model_kwargs": model_kwargs, "recipe": asdict(recipe),
            **(extra or {})}


def train_reference(role: str, task: Task, model_name: str, recipe: Recipe, loop: Optional[Loop] = None,
                    cache: Optional[ModelCache] = None, model_kwargs: Optional[dict] = None,
                    extra_key: Optional[dict] = None, prepare=None):
    """Train (or load from cache) the ``original`` model (all training data) or the ``gold`` model (retain set only).

    Returns (model, seconds_of_training). ``prepare(model)`` may alter a fresh model before training (e.g. pruning masks);
    anything it depends on must be in ``extra_key``.
    """
    if role not in ("original", "gold"):
        raise ValueError(role)
    loop = loop or Loop(progress=False)
    cache = cache or ModelCache()
    model_kwargs = dict(model_kwargs or {})

    def build():
        loop.seed(task.seed)
        m = make_model(model_name, task, **model_kwargs)
        if prepare is not None:
            m = prepare(m)
        return m

    data = task.train_split("full" if role == "original" else "retain")
    model, seconds = cache.get_or_train(_key(role, task, model_name, model_kwargs, recipe, extra_key), build,
                                        lambda m: train_model(m, data, recipe, loop, seed=task.seed, desc=role))
    check_output_width(model, task)
    model.eval()
    return model, seconds


def epochs_equivalent(samples: int, task: Task) -> float:
    """Sample passes expressed in epochs over the full training set."""
    return samples / max(1, len(task.train_labels))


__all__ = ["Recipe", "train_model", "train_reference", "make_optimizer", "epochs_equivalent"]
