"""SCRUB: a student that moves away from the teacher on the forget set and stays close to it on the retain set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

from ...errors import ObliviateError
from .base import Method, frozen_copy, optimizer_for, register_method


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T)) * T^2``, averaged over the batch (the usual distillation scaling)."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    q = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature ** 2


@register_method
@dataclass
class SCRUB(Method):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023, arXiv 2302.09880).

    The student starts as the teacher (the original, frozen). Each epoch: during the first ``msteps`` epochs a
    max-step over D_f maximising ``KL_T(teacher || student)``; then a min-step over D_r minimising
    ``gamma * CE + alpha * KL_T(teacher || student)``. One SGD optimiser serves both steps. Returns the student.

    Hyperparameters: one reference configuration, the SCRUB code's large-scale (CIFAR) setting: epochs=3, msteps=2,
    gamma=0.99, alpha=0.001, temperature=4.0, lr=5e-4 (SGD), momentum=0.9, weight_decay=5e-4,
    lr_decay_epochs=(3, 5, 9), lr_decay_rate=0.1 (step decay: epoch e, counted from 1, runs at
    ``lr * lr_decay_rate ** #{d : e > d}``; with 3 epochs it never fires, it does for longer runs),
    retain_batch_size=128, forget_batch_size=32, seed=0. (The code's MIA configuration, 5 epochs, msteps 3, gamma 1,
    alpha 0.5, is not mixed in.)

    Differs from the LoTUS reference code, which trains a copy and returns the untouched original; here the trained
    student is returned.

    Example:
        >>> unlearned = SCRUB(epochs=5, msteps=3).unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "scrub"
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023 (arXiv 2302.09880)"
    summary = "student-teacher: max-steps away from the teacher on D_f, min-steps towards it on D_r"

    epochs: int = 3
    msteps: int = 2
    gamma: float = 0.99
    alpha: float = 0.001
    temperature: float = 4.0
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay_epochs: Tuple[int, ...] = (3, 5, 9)
    lr_decay_rate: float = 0.1
    retain_batch_size: int = 128
    forget_batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.msteps > self.epochs:
            raise ObliviateError(f"scrub: msteps ({self.msteps}) cannot exceed epochs ({self.epochs})")
        if not isinstance(self.lr_decay_epochs, (list, tuple)):
            raise ObliviateError(f"scrub: lr_decay_epochs must be a list of epochs, e.g. [3, 5, 9], "
                                 f"not {self.lr_decay_epochs!r}")
        self.lr_decay_epochs = tuple(int(e) for e in self.lr_decay_epochs)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (counted from 0): the reference's step decay."""
        return self.lr * self.lr_decay_rate ** sum(epoch + 1 > d for d in self.lr_decay_epochs)

    def unlearn(self, model, task, loop):
        teacher = frozen_copy(model, loop)
        seed = self.seed + task.seed
        forget = loop.loader(task.train_split("forget"), self.forget_batch_size, shuffle=True, seed=seed)
        retain = loop.loader(task.train_split("retain"), self.retain_batch_size, shuffle=True, seed=seed + 1)
        optimizer = optimizer_for(model.parameters(), "sgd", self.lr, self.weight_decay, self.momentum)

        def max_step(student, batch):
            x = batch[0]
            with torch.no_grad():
                t = teacher(x)
            return -distill_kl(student(x), t, self.temperature)

        def min_step(student, batch):
            x, y = batch[0], batch[1]
            with torch.no_grad():
                t = teacher(x)
            s = student(x)
            return self.gamma * F.cross_entropy(s, y) + self.alpha * distill_kl(s, t, self.temperature)

        self.history_ = []  # (epoch, step kind, lr), read by tests
        for epoch in range(self.epochs):
            for group in optimizer.param_groups:
                group["lr"] = self.lr_at(epoch)
            if epoch < self.msteps:
                self.history_.append((epoch, "max", self.lr_at(epoch)))
                model = loop.fit(model, optimizer, forget, max_step, 1, desc="scrub max-step")
            self.history_.append((epoch, "min", self.lr_at(epoch)))
            model = loop.fit(model, optimizer, retain, min_step, 1, desc="scrub min-step")
        return model
