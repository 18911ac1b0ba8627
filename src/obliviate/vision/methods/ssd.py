"""Selective Synaptic Dampening (SSD): shrink the weights far more important to the forget set than to the data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from ...errors import ObliviateError
from .base import Method, mean_gradients, register_method


@torch.no_grad()
def dampen(params, forget_importance, full_importance, alpha: float, lam: float) -> List[torch.Tensor]:
    """In place: ``theta <- theta * min(lam * I_D / I_f, 1)`` where ``I_f > alpha * I_D``; returns the selections."""
    selections = []
    for p, i_f, i_d in zip(params, forget_importance, full_importance):
        selected = i_f > alpha * i_d
        beta = (lam * i_d / i_f.clamp_min(torch.finfo(i_f.dtype).tiny)).clamp(max=1.0)
        p.mul_(torch.where(selected, beta, torch.ones_like(beta)))
        selections.append(selected)
    return selections


@register_method
@dataclass
class SSD(Method):
    """Selective Synaptic Dampening (Foster, Schoepf and Brintrup, "Fast Machine Unlearning Without Retraining
    Through Selective Synaptic Dampening", AAAI 2024, arXiv 2308.07707).

    Importances are diagonal empirical Fisher values, ``I_X = mean over batches of (grad CE)^2``, on D_f and on the full
    training set D (in eval mode). Every parameter with ``I_f > alpha * I_D`` is dampened once:
    ``theta <- theta * min(lambda * I_D / I_f, 1)``. No training.

    Hyperparameters (CIFAR-10 / ResNet-18 defaults): alpha=10.0 (selection), lam=1.0 (dampening), batch_size=128
    (the paper fixes no importance batch size; the reference code's forget and full-train loaders use 128;
    importances are means of squared batch gradients, so it matters).

    Differs from the LoTUS reference code, which applies the dampening once per epoch; SSD is applied once.

    Example:
        >>> unlearned = SSD(alpha=10.0, lam=1.0).unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "ssd"
    paper = ("Foster, Schoepf and Brintrup, Fast Machine Unlearning Without Retraining Through Selective Synaptic "
             "Dampening, AAAI 2024 (arXiv 2308.07707)")
    summary = "dampen weights whose forget-set Fisher importance dwarfs their full-data importance (no training)"

    alpha: float = 10.0
    lam: float = 1.0
    batch_size: int = 128

    def __post_init__(self):
        super().__post_init__()
        if self.alpha <= 0 or self.lam <= 0:
            raise ObliviateError("ssd: alpha and lam must be positive")

    def importances(self, model, dataset, loop) -> List[torch.Tensor]:
        return mean_gradients(model, dataset, loop, self.batch_size, transform=torch.square)

    def unlearn(self, model, task, loop):
        forget_importance = self.importances(model, task.forget, loop)
        full_importance = self.importances(model, task.train_eval, loop)
        params = [p for p in model.parameters() if p.requires_grad]
        dampen(params, forget_importance, full_importance, self.alpha, self.lam)
        return model
