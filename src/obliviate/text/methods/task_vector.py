"""Task-vector negation: fine-tune on the forget set, then move the weights the other way."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..train import Paired, nll, per_process_batch, without_dropout
from .base import Method, register_method


@register_method
@dataclass
class TaskVector(Method):
    """Task-vector negation (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023, arXiv 2212.04089; a
    MUSE baseline).

    Fine-tune a copy of the target on the forget set to theta_ft; the task vector is tau = theta_ft - theta; return
    ``theta - scale * tau``. With ``scale = 0`` the target comes back unchanged. The retain set is never read.

    Hyperparameters: scale=5.0 (MUSE's scripts; the paper tunes the scaling coefficient on held-out data), and for the
    fine-tuning epochs=5, lr=1e-5 (AdamW, constant), batch_size=32, weight_decay=0.0 (MUSE's fine-tuning setting).
    """

    name = "task-vector"
    paper = "Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023 (arXiv 2212.04089)"
    summary = "fine-tune on the forget set, subtract the weight change from the target"
    reads_retain = False

    scale: float = 5.0
    epochs: int = 5
    lr: float = 1e-5
    batch_size: int = 32
    weight_decay: float = 0.0

    def unlearn(self, model, data, loop):
        tuned = copy.deepcopy(model)
        loader = loop.loader(Paired(data.forget, None), per_process_batch(self.batch_size, loop), shuffle=True,
                             seed=data.seed)
        optimizer = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=self.lr,
                                      weight_decay=self.weight_decay)
        with without_dropout(tuned):
            tuned = loop.fit(tuned, optimizer, loader, lambda m, b: nll(m, *b), self.epochs, desc=self.name)
        if hasattr(tuned, "merge_and_unload"):  # LoRA: negate the merged weight change, not the adapter factors
            tuned, model = tuned.merge_and_unload(), model.merge_and_unload()
        tuned_params = dict(tuned.named_parameters())
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.sub_(self.scale * (tuned_params[name].to(p.device) - p))
        return model
