"""Bad Teacher: distil from an incompetent (random) teacher on the forget set and the original on the retain set."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data import Tagged
from .base import Method, frozen_copy, optimizer_for, random_subset, register_method


def randomly_initialised(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every parameter freshly initialised.

    Modules re-initialise themselves (``reset_parameters``; ``nn.MultiheadAttention``'s in-projection through
    ``_reset_parameters``). On a pruned layer the reset writes the derived ``weight``; it is copied into ``weight_orig``
    so that the pruning hook does not rebuild the trained weights (the mask stays). Parameters that no module resets
    (a ViT's class token and position embedding) are drawn from a truncated normal with std 0.02.
    """
    fresh = copy.deepcopy(model)
    trained = {name: p.detach().clone() for name, p in fresh.named_parameters()}
    with torch.no_grad():
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
            if callable(reset):
                reset()
            for name, _ in list(module.named_parameters(recurse=False)):
                if name.endswith("_orig") and hasattr(module, name[:-5] + "_mask"):
                    getattr(module, name).copy_(getattr(module, name[:-5]))
        for name, p in fresh.named_parameters():
            if torch.equal(p, trained[name]):
                nn.init.trunc_normal_(p, std=0.02)
    from ..prune import refresh
    return refresh(fresh)


@register_method
@dataclass
class BadTeacher(Method):
    """Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using an
    Incompetent Teacher", AAAI 2023, arXiv 2205.08096).

    The student starts from the original. Targets are ``softmax(T_d(x) / t)`` of an incompetent teacher ``T_d`` (a
    freshly randomly initialised network of the same architecture) for forget samples, and ``softmax(T_s(x) / t)`` of
    the competent teacher ``T_s`` (the frozen original) for retain samples. Loss: ``KL(targets || softmax(S(x) / t))``
    over D_f plus a random ``retain_fraction`` of D_r, shuffled together.

    Hyperparameters (CIFAR-10 / ResNet-18 defaults): temperature=1.0, epochs=1, lr=1e-4 (Adam), batch_size=256,
    retain_fraction=0.3, seed=0 (retain subset, shuffling, teacher initialisation).

    The incompetent teacher is the same architecture with every parameter re-drawn (see ``randomly_initialised``),
    also on ViTs (class token, position embedding, attention projections) and on pruned models (same mask).

    Example:
        >>> unlearned = BadTeacher().unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "bad-teacher"
    paper = ("Chundawat et al., Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using an Incompetent "
             "Teacher, AAAI 2023 (arXiv 2205.08096)")
    summary = "distil a random teacher on the forget set and the original on a retain subset"

    temperature: float = 1.0
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 256
    retain_fraction: float = 0.3
    seed: int = 0

    def teachers(self, model, task, loop):
        """(competent, incompetent): the frozen original and a frozen, freshly initialised network."""
        competent = frozen_copy(model, loop)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + task.seed)
            incompetent = frozen_copy(randomly_initialised(model), loop)
        return competent, incompetent

    def targets(self, competent, incompetent, x, is_forget):
        with torch.no_grad():
            good = F.softmax(competent(x).float() / self.temperature, dim=1)
            bad = F.softmax(incompetent(x).float() / self.temperature, dim=1)
        return torch.where(is_forget.bool().unsqueeze(1), bad, good)

    def loss(self, student_logits, target):
        """KL(target || softmax(student / t)), averaged over the batch."""
        log_p = F.log_softmax(student_logits.float() / self.temperature, dim=1)
        return F.kl_div(log_p, target, reduction="batchmean")

    def unlearn(self, model, task, loop):
        competent, incompetent = self.teachers(model, task, loop)
        retain_idx = random_subset(task.retain_idx, self.retain_fraction, self.seed + task.seed)
        data = Tagged(task.train, np.concatenate([task.forget_idx, retain_idx]),
                      np.concatenate([np.ones(len(task.forget_idx)), np.zeros(len(retain_idx))]))
        loader = loop.loader(data, self.batch_size, shuffle=True, seed=self.seed + task.seed)

        def loss(student, batch):
            x, _, is_forget = batch
            return self.loss(student(x), self.targets(competent, incompetent, x, is_forget))

        optimizer = optimizer_for(model.parameters(), "adam", self.lr)
        return loop.fit(model, optimizer, loader, loss, self.epochs, desc="bad-teacher")
