"""Random Label (RL): every epoch, a pass over the forget set with fresh random wrong labels, then a pass over D_r."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from ...data import Tagged
from .base import Method, optimizer_for, register_method


def wrong_labels(labels: np.ndarray, num_classes: int, seed) -> np.ndarray:
    """For each label, a class drawn uniformly among the ``num_classes - 1`` other classes (``seed``: an int or a
    numpy ``Generator``)."""
    if num_classes < 2:
        raise ValueError("random labels need at least two classes")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return (np.asarray(labels) + rng.integers(1, num_classes, size=len(labels))) % num_classes


def relabelled_loss(model, batch):
    """Cross-entropy against the tag (the drawn wrong label) instead of the true label."""
    x, _, wrong = batch
    return F.cross_entropy(model(x), wrong.long())


def retain_loss(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


@register_method
@dataclass
class RandomLabel(Method):
    """Random Label, or amnesiac unlearning (Graves, Nagisetty and Ganesh, "Amnesiac Machine Learning", AAAI 2021,
    arXiv 2010.10981; settings of Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency
    in Both Image Classification and Generation", ICLR 2024, arXiv 2310.12508).

    Every epoch: fresh random wrong labels are drawn for D_f; one pass of cross-entropy over the relabelled D_f, then
    one pass over D_r with the true labels (the schedule of the SalUn reference code's CIFAR-10 branch and of the
    LoTUS reference code's ``relabel``). One SGD optimiser (its momentum carries over between passes).

    Hyperparameters (CIFAR-10 / ResNet-18 defaults): epochs=10, lr=0.01 (SGD), momentum=0.9, weight_decay=5e-4,
    batch_size=256, seed=0 (labels and shuffling).

    Deliberate departure from the reference code, which draws labels uniformly over all classes so that some forget
    samples keep their true label: here every drawn label is wrong (the method's definition).

    Example:
        >>> unlearned = RandomLabel(epochs=5).unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "random-label"
    paper = "Graves, Nagisetty and Ganesh, Amnesiac Machine Learning, AAAI 2021 (arXiv 2010.10981)"
    summary = "each epoch: forget set with fresh random wrong labels, then the retain set"

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    seed: int = 0

    def relabelled(self, task, rng) -> Tagged:
        """D_f tagged with one fresh draw of wrong labels."""
        return Tagged(task.train, task.forget_idx, wrong_labels(task.labels("forget"), task.num_classes, rng))

    def fit(self, model, task, loop, after_step=None):
        seed = self.seed + task.seed
        rng = np.random.default_rng(seed)
        optimizer = optimizer_for(model.parameters(), "sgd", self.lr, self.weight_decay, self.momentum)
        retain = task.train_split("retain")
        self.history_ = []  # (epoch, pass, labels drawn for D_f or None), read by tests
        for epoch in range(self.epochs):
            forget = self.relabelled(task, rng)
            self.history_.append((epoch, "forget", forget.tags.long().numpy()))
            model = loop.fit(model, optimizer, loop.loader(forget, self.batch_size, shuffle=True, seed=seed + epoch),
                             relabelled_loss, 1, desc=f"{self.name}: forget", after_step=after_step)
            self.history_.append((epoch, "retain", None))
            model = loop.fit(model, optimizer, loop.loader(retain, self.batch_size, shuffle=True, seed=seed + epoch),
                             retain_loss, 1, desc=f"{self.name}: retain", after_step=after_step)
        return model

    def unlearn(self, model, task, loop):
        return self.fit(model, task, loop)
