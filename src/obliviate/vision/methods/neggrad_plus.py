"""NegGrad+: descend on the retain loss while ascending on the forget loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from .base import Method, optimizer_for, register_method


def fetch(dataset: Dataset, indices):
    """A stacked (x, y, ...) batch of ``dataset`` at ``indices``."""
    if callable(getattr(dataset, "__getitems__", None)):
        out = dataset.__getitems__(list(indices))
        return out if isinstance(out, tuple) else default_collate(out)
    return default_collate([dataset[i] for i in indices])


class Paired(Dataset):
    """Item i is (x_r, y_r, x_f, y_f): retain sample i mod n_r with forget sample i mod n_f. Its length is that of
    the larger set, so one epoch traverses the larger set once and cycles through the smaller one."""

    def __init__(self, retain: Dataset, forget: Dataset):
        self.retain, self.forget = retain, forget

    def __len__(self) -> int:
        return max(len(self.retain), len(self.forget))

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, idx):
        xr, yr = fetch(self.retain, [i % len(self.retain) for i in idx])[:2]
        xf, yf = fetch(self.forget, [i % len(self.forget) for i in idx])[:2]
        return xr, yr, xf, yf


@register_method
@dataclass
class NegGradPlus(Method):
    """NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023, arXiv 2302.09880).

    Per step, a retain batch and a forget batch (forget batches cycled):
    ``loss = beta * CE(retain batch) - (1 - beta) * CE(forget batch)``, so the optimiser descends on D_r and truly
    ascends on D_f.

    Hyperparameters (CIFAR-10 / ResNet-18 defaults): beta=0.95, epochs=10, lr=0.01, batch_size=128, seed=0; the
    optimiser is plain SGD (momentum=0.0, weight_decay=0.0), as in the SCRUB reference code's ``negative_grad``.

    The network trains in train mode, as in the SCRUB reference code's ``train_negrad`` (its large-scale
    experiments); its small-scale notebooks' ``run_neggrad_epoch`` trains in eval mode (BatchNorm statistics frozen).
    The paper does not say which.

    Differs from the LoTUS reference code, which negates the gradients before ``backward()`` and so performs plain
    descent on the forget loss; here the forget term enters the loss with a minus sign.

    Example:
        >>> unlearned = NegGradPlus(beta=0.95).unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "neggrad+"
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023 (arXiv 2302.09880)"
    summary = "descend on retain cross-entropy, ascend on forget cross-entropy (weighted by beta)"

    beta: float = 0.95
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 128
    seed: int = 0

    def loss(self, model, batch):
        xr, yr, xf, yf = batch
        return self.beta * F.cross_entropy(model(xr), yr) - (1 - self.beta) * F.cross_entropy(model(xf), yf)

    def unlearn(self, model, task, loop):
        data = Paired(task.train_split("retain"), task.train_split("forget"))
        loader = loop.loader(data, self.batch_size, shuffle=True, seed=self.seed + task.seed)
        optimizer = optimizer_for(model.parameters(), "sgd", self.lr, self.weight_decay, self.momentum)
        return loop.fit(model, optimizer, loader, self.loss, self.epochs, desc="neggrad+")
