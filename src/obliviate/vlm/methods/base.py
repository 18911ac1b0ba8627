"""The method interface for vision-language (CLIP-style) unlearning, the prompt-training base, and the registry.

A method is a small dataclass: its fields are the hyperparameters (defaults from its paper), its docstring cites the
paper, and ``unlearn(clip, task, loop)`` returns the unlearned model, a :class:`~obliviate.vlm.prompts.PromptedClip`
around the frozen ``clip``. The backbone is never changed: only prompts (and the helper modules a method adds) train.
Methods never print or move tensors by hand; the :class:`~obliviate.loop.Loop` does.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import ClassVar, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ObliviateError
from ...loop import Loop
from ...method import HyperparameterMethod
from ...registry import Registry
from ..data import DomainTask
from ..losses import uniform_target_loss
from ..models import ClipModel
from ..prompts import PromptedClip

METHODS = Registry("vlm method")
register_method = METHODS.register_method


@dataclasses.dataclass
class Method(HyperparameterMethod):
    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""        # "Authors, Title, Venue Year (arXiv id)"
    summary: ClassVar[str] = ""      # one line for `obliviate methods`
    forget_kinds: ClassVar[Tuple[str, ...]] = ("domain",)   # the forget specs the method accepts

    @abc.abstractmethod
    def unlearn(self, clip: ClipModel, task: DomainTask, loop: Loop) -> PromptedClip:
        """Return the unlearned model; ``clip`` is frozen and must stay unchanged."""

    def check_task(self, task: DomainTask) -> None:
        if task.forget.kind not in self.forget_kinds:
            plural = {"domain": "domains", "class": "classes"}
            raise ObliviateError(f"{self.name} forgets {' or '.join(plural[k] for k in self.forget_kinds)}, not "
                                 f"{plural[task.forget.kind]} (forget spec {task.forget})")


def create(name: str, **hyperparameters) -> Method:
    """Instantiate a registered method; unknown hyperparameters are an error that lists the known ones."""
    return METHODS.instantiate(name, **hyperparameters)


def epoch_schedule(optimizer, epochs: int, warmup_epochs: int, warmup_lr: float, lr: float):
    """Per-epoch learning rate as Dassl's prompt learners: a constant ``warmup_lr`` for the first ``warmup_epochs``,
    then cosine decay from ``lr`` over all ``epochs`` (stepped after each epoch)."""
    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return warmup_lr / lr
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainable(nn.Module):
    """The prompted model and a method's helper modules (e.g. a domain classifier), trained as one module."""

    def __init__(self, prompted: PromptedClip, **helpers: nn.Module):
        super().__init__()
        self.prompted = prompted
        self.helpers = nn.ModuleDict(helpers)

    def train(self, mode: bool = True):
        super().train(mode)
        self.prompted.train(mode)
        return self


@dataclasses.dataclass
class PromptMethod(Method):
    """Prompt learning for domain unlearning: L = L_memorize + L_forget (+ a subclass's ``extra_loss``).

    L_memorize is CLIP's class cross-entropy on memorize samples; L_forget the cross-entropy to the uniform target on
    forget samples (each a mean over its part of the batch). SGD with momentum, constant warm-up then cosine decay,
    as the paper's Dassl recipe."""
    epochs: int = 50
    lr: float = 0.0025
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    n_prompts: int = 8
    prompt_depth: int = 9
    n_ctx: int = 0

    def __post_init__(self):
        super().__post_init__()
        for f in ("epochs", "batch_size"):
            if getattr(self, f) < 1:
                raise ObliviateError(f"{self.name}: {f} must be at least 1")
        if self.lr <= 0:
            raise ObliviateError(f"{self.name}: lr must be positive")

    def instapg_layer(self, clip: ClipModel):
        return None

    def helpers(self, clip: ClipModel, task: DomainTask) -> dict:
        return {}

    def extra_loss(self, model: Trainable, features, logits, batch) -> torch.Tensor | None:
        return None

    def build(self, clip: ClipModel, task: DomainTask) -> Trainable:
        prompted = PromptedClip(clip, task.class_names, task.template, n_prompts=self.n_prompts,
                                depth=self.prompt_depth, n_ctx=self.n_ctx, instapg_layer=self.instapg_layer(clip))
        return Trainable(prompted, **self.helpers(clip, task))

    def loss(self, model: Trainable, batch) -> torch.Tensor:
        x, y, d, forget = batch
        features = model.prompted.image_features(x)
        logits = model.prompted.logits(features)
        total = logits.sum() * 0.0
        if (~forget).any():
            total = total + F.cross_entropy(logits[~forget], y[~forget])
        if forget.any():
            total = total + uniform_target_loss(logits[forget])
        extra = self.extra_loss(model, features, logits, batch)
        return total if extra is None else total + extra

    def unlearn(self, clip: ClipModel, task: DomainTask, loop: Loop) -> PromptedClip:
        self.check_task(task)
        loop.seed(task.seed)
        model = self.build(clip, task)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        sched = epoch_schedule(opt, self.epochs, self.warmup_epochs, self.warmup_lr, self.lr)
        loader = loop.loader(task.train, self.batch_size, shuffle=True, seed=task.seed)
        model = loop.fit(model, opt, loader, self.loss, epochs=self.epochs, desc=self.name, scheduler=sched)
        return model.prompted.eval()


__all__ = ["Method", "PromptMethod", "Trainable", "METHODS", "register_method", "create", "epoch_schedule"]
