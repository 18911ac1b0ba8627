"""LoTUS: unlearning by smoothing the predictions on the forget set with a Gumbel-softmax teacher."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from torch.utils.data import Subset

from ...data import Tagged, same_samples
from .base import Method, eval_accuracy, frozen_copy, optimizer_for, random_subset, register_method


@register_method
@dataclass
class LoTUS(Method):
    """LoTUS (Spartalis et al., "LoTUS: Large-Scale Machine Unlearning with a Taste of Uncertainty", CVPR 2025,
    arXiv 2503.18314).

    The student (the original weights) is trained on all of D_f plus a random ``retain_fraction`` of D_r, against targets
    from a frozen copy of the original (the teacher T) drawn by the Gumbel-softmax:
    forget samples get ``softmax((z + g) / tau_d)``, retain samples the tau -> 0+ limit ``one_hot(argmax(z + g))`` (a sample
    of the teacher's prediction). Before every epoch ``tau_d = exp(alpha * (Acc(S, D_f) - Acc(T, D_u)))`` (Eq. 11): while the
    student is more accurate on D_f than the teacher on unseen data, targets are smoothed (tau_d > 1); when it is less
    accurate they are sharpened (tau_d < 1). Loss: cross-entropy of the student to the targets (Eq. 12). Labels are never
    used in the loss.

    Class unlearning (paper appendix): Acc(T, D_u) := 0 and alpha = ``class_alpha`` (32); chosen automatically for
    ``class:`` forget specs unless ``class_unlearning`` is set.

    Keeping the best epoch (``keep_best``; on by default for class unlearning): with Acc(T, D_u) := 0 the temperature
    swings (tau = exp(32 Acc(S, D_f)) is ~1e13 at the start, ~1 once the class is forgotten), so the forget accuracy
    cycles between near 0 and ~0.5 from epoch to epoch and the last epoch lands anywhere on that cycle. The model is
    therefore evaluated before every epoch and after the last one, and the epoch returned is the one whose
    Acc(S, D_f) is closest to the target Acc(T, D_u) (0 for classes) among those whose accuracy on the training retain
    subset, and for class unlearning on D_u's images of the kept classes, stays within ``retain_tolerance`` of the
    original's (ties: the higher retain accuracy, then the earlier epoch). The held-out kept classes are checked
    because the retain subset is memorised: on MNIST-1D class:3 it stayed within 3 points while the kept classes'
    held-out accuracy fell 5-6 points. The criterion is retrain-free and reads neither the gold model nor the test
    split: only D_f, the retain subset LoTUS trains on and D_u. The reference code means to keep a "best" checkpoint
    (it stores the state without copying, so keeps the last); the paper trains a fixed number of epochs.

    Hyperparameters (paper defaults for ResNet-18; ViT: lr 1e-6, 3 epochs, batch 32):
        alpha=2.0 (tuned over {2, 4, 8, 16}; the paper reports 2 as best), class_alpha=32.0, epochs=10, lr=1e-4,
        batch_size=128, weight_decay=5e-4 (AdamW), retain_fraction=0.3, gumbel=True (False: plain softmax of z / tau,
        the paper's ablation), stop_below_parity=False, keep_best=None (class unlearning: True; instance: False, the
        paper's last epoch), retain_tolerance=0.03, seed=0.

    Where this differs from the reference code (github cspartalis/LoTUS), following the paper:
        - Acc(S, D_f) is measured in eval mode without augmentation (the code measures it with training augmentation).
        - tau_d < 1 sharpens targets when the student over-unlearns; the code instead stops once d <= -0.01. That stop is
          available as ``stop_below_parity=True``.
        - The retain subset is drawn once per run, seeded (as the code does); the paper does not say whether per epoch.
        - When the training view has no augmentation, the frozen teacher's logits are computed once and reused every
          epoch (identical values; fresh Gumbel noise is still drawn per batch). With augmentation the teacher sees
          each augmented batch, as in the paper.

    Example:
        >>> method = LoTUS(alpha=2.0)
        >>> unlearned = method.unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "lotus"
    paper = "Spartalis et al., LoTUS: Large-Scale Machine Unlearning with a Taste of Uncertainty, CVPR 2025 (arXiv 2503.18314)"
    summary = "Gumbel-softmax teacher smooths forget-set predictions; temperature tracks forget vs unseen accuracy"

    alpha: float = 2.0
    class_alpha: float = 32.0
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 128
    weight_decay: float = 5e-4
    retain_fraction: float = 0.3
    gumbel: bool = True
    class_unlearning: Optional[bool] = None
    stop_below_parity: bool = False
    keep_best: Optional[bool] = None
    retain_tolerance: float = 0.03
    seed: int = 0

    def temperature(self, acc_student_forget: float, acc_teacher_unseen: float, alpha: float) -> float:
        """Eq. 11: tau_d = exp(alpha * (Acc(S, D_f) - Acc(T, D_u)))."""
        return math.exp(alpha * (acc_student_forget - acc_teacher_unseen))

    def targets(self, teacher_logits: torch.Tensor, is_forget: torch.Tensor, tau: float) -> torch.Tensor:
        """Soft targets: forget rows at temperature tau, retain rows at the tau -> 0+ limit (one-hot)."""
        z = teacher_logits.float()
        if self.gumbel:
            g = -torch.log(-torch.log(torch.rand_like(z).clamp_(1e-10, 1.0 - 1e-7)))  # Gumbel(0, 1)
            z = z + g
        soft = torch.softmax(z / tau, dim=1)
        hard = F.one_hot(z.argmax(dim=1), z.shape[1]).to(soft.dtype)
        return torch.where(is_forget.bool().unsqueeze(1), soft, hard)

    def unlearn(self, model, task, loop):
        class_mode = self.class_unlearning if self.class_unlearning is not None else task.spec.kind == "class"
        alpha = self.class_alpha if class_mode else self.alpha
        teacher = frozen_copy(model, loop)
        acc_teacher_unseen = 0.0 if class_mode else eval_accuracy(teacher, task.unseen, task.labels("unseen"), loop)
        forget_labels = task.labels("forget")
        retain_idx = random_subset(task.retain_idx, self.retain_fraction, self.seed + task.seed)
        indices = np.concatenate([task.forget_idx, retain_idx])
        data = Tagged(task.train, indices, np.concatenate([np.ones(len(task.forget_idx)), np.zeros(len(retain_idx))]),
                      positions=True)
        # The teacher is frozen: without augmentation its logits are the same every epoch, so compute them once.
        cached = None
        if same_samples(task.train, task.train_eval):
            cached = loop.predict(teacher, Subset(task.train_eval, indices)).to(loop.device)
        loader = loop.loader(data, self.batch_size, shuffle=True, seed=self.seed + task.seed)
        optimizer = optimizer_for(model.parameters(), "adamw", self.lr, self.weight_decay)
        self.history_ = []  # per-epoch (acc_forget, tau) record, read by tests and reports
        state = {"tau": 1.0}
        keep_best = self.keep_best if self.keep_best is not None else class_mode
        keeper = None
        if keep_best:
            checks = [(Subset(task.train_eval, retain_idx), task.train_labels[retain_idx])]
            if class_mode:
                kept = ~np.isin(task.labels("unseen"), task.forgotten_classes)
                checks.append((Subset(task.unseen, np.flatnonzero(kept)), task.labels("unseen")[kept]))
            keeper = _BestEpoch(checks, acc_teacher_unseen, self.retain_tolerance)

        def before_epoch(epoch):
            acc_f = eval_accuracy(model, task.forget, forget_labels, loop)
            d = acc_f - acc_teacher_unseen
            state["tau"] = self.temperature(acc_f, acc_teacher_unseen, alpha)
            record = {"epoch": epoch, "acc_forget": acc_f, "acc_teacher_unseen": acc_teacher_unseen, "alpha": alpha,
                      "tau": state["tau"]}
            if keeper is not None:
                record.update(keeper.offer(epoch, model, acc_f, loop))
            self.history_.append(record)
            return not (self.stop_below_parity and d <= -0.01)

        def loss_fn(student, batch):
            x, _, is_forget, pos = batch  # labels are never used
            with torch.no_grad():
                target = self.targets(teacher(x) if cached is None else cached[pos], is_forget, state["tau"])
            return -(target * F.log_softmax(student(x).float(), dim=1)).sum(dim=1).mean()

        model = loop.fit(model, optimizer, loader, loss_fn, self.epochs, desc="lotus", before_epoch=before_epoch)
        if keeper is None:
            return model
        final = len(self.history_)
        acc_f = eval_accuracy(model, task.forget, forget_labels, loop)
        self.history_.append({"epoch": final, "acc_forget": acc_f, "acc_teacher_unseen": acc_teacher_unseen,
                              "alpha": alpha, "tau": None, **keeper.offer(final, model, acc_f, loop)})
        self.chosen_epoch_ = keeper.epoch
        model.load_state_dict(keeper.state)
        return model


class _BestEpoch:
    """The model state whose forget accuracy is closest to ``target`` among those keeping the accuracy on every
    (dataset, labels) check within ``tolerance`` of the first state offered (the original). The first check is the
    retain subset (its accuracy breaks ties); a second, for class unlearning, is D_u's kept classes."""

    NAMES = ("acc_retain_subset", "acc_unseen_kept")

    def __init__(self, checks, target: float, tolerance: float):
        self.checks, self.target, self.tolerance = checks, target, tolerance
        self.floors, self.key, self.state, self.epoch = None, None, None, None

    def offer(self, epoch: int, model, acc_forget: float, loop) -> dict:
        accs = [eval_accuracy(model, data, labels, loop) for data, labels in self.checks]
        if self.floors is None:
            self.floors = [a - self.tolerance for a in accs]
        below = any(a < f for a, f in zip(accs, self.floors))
        key = (below, abs(acc_forget - self.target), -accs[0])
        if self.key is None or key < self.key:
            self.key, self.epoch = key, epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return dict(zip(self.NAMES, accs))
