"""SalUn: Random Label restricted to the weights most salient for the forget loss."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F

from ...errors import ObliviateError
from .base import mean_gradients, register_method
from .random_label import RandomLabel


@register_method
@dataclass
class SalUn(RandomLabel):
    """SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
    Classification and Generation", ICLR 2024, arXiv 2310.12508).

    Saliency mask ``m = 1`` on the top ``threshold`` fraction of ``|grad of -CE(D_f)|`` at the original weights,
    ranked globally over all parameters; then Random Label updates only the masked weights,
    ``theta_u = m * (theta_o + delta) + (1 - m) * theta_o``: every epoch fresh random wrong labels for D_f, a pass over
    the relabelled D_f, then a pass over D_r (the reference code's CIFAR-10 branch; see random-label).

    Hyperparameters (CIFAR-10 / ResNet-18 defaults): threshold=0.5, epochs=10, lr=0.013 (SGD), momentum=0.9,
    weight_decay=5e-4, batch_size=256, seed=0.

    Differs from the reference code, which multiplies gradients by the mask before an SGD step with weight decay, so
    unmasked weights still decay; here unmasked weights stay exactly at their original values, as in the paper's
    formula. Random labels are always wrong (see random-label); the reference draws them per batch over all classes.

    Example:
        >>> unlearned = SalUn(threshold=0.5).unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "salun"
    paper = ("Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image "
             "Classification and Generation, ICLR 2024 (arXiv 2310.12508)")
    summary = "random-label unlearning of the weights most salient to the forget loss"

    threshold: float = 0.5
    lr: float = 0.013

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.threshold <= 1.0:
            raise ObliviateError(f"salun: threshold must lie in (0, 1], got {self.threshold}")

    def saliency_mask(self, model, task, loop) -> List[torch.Tensor]:
        """Boolean masks, one per trainable parameter, selecting the top ``threshold`` fraction by |gradient|."""
        grads = mean_gradients(model, task.forget, loop, self.batch_size,
                               loss_fn=lambda m, x, y: -F.cross_entropy(m(x), y))
        flat = torch.cat([g.abs().flatten() for g in grads])
        k = max(1, int(round(self.threshold * flat.numel())))
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        chosen[flat.topk(k).indices] = True
        return list(chosen.split([g.numel() for g in grads]))

    def unlearn(self, model, task, loop):
        params = [p for p in model.parameters() if p.requires_grad]
        masks = [m.view_as(p) for m, p in zip(self.saliency_mask(model, task, loop), params)]
        originals = [p.detach().clone() for p in params]

        @torch.no_grad()
        def keep_unmasked(trained):
            for p, m, p0 in zip((p for p in trained.parameters() if p.requires_grad), masks, originals):
                p.copy_(torch.where(m, p, p0))

        return self.fit(model, task, loop, after_step=keep_unmasked)
