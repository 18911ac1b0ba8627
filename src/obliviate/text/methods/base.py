"""The method interface for language-model unlearning, the loss-based base class, and the registry of methods.

A method is a small dataclass: its fields are the hyperparameters (defaults from its paper), its docstring cites the
paper, and ``unlearn(model, data, loop)`` returns the unlearned model. ``model`` is already a copy of the target model:
methods may change it in place. Loss-based methods (OpenUnlearning's economy) override one or two hooks:
``forget_loss`` and ``retain_loss``; the total is ``gamma * forget_loss + alpha * retain_loss``.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Callable, ClassVar, Optional

import torch

from ...errors import ObliviateError
from ...method import HyperparameterMethod
from ...loop import Loop, frozen_copy  # noqa: F401  (re-exported for methods)
from ...registry import Registry
from ..train import (LMDataset, Paired, nll, per_process_batch, sequence_logprob, token_denominator, token_logprobs,
                     without_dropout)

METHODS = Registry("lm method")


@dataclasses.dataclass
class UnlearnData:
    """What a method may read: the tokenised forget and retain sets, the tokenizer, and a per-epoch callback.

    ``on_epoch(epoch, model)`` (optional) runs after every unlearning epoch (evaluation during unlearning).
    ``anchor_terms()`` (optional) builds the task's anchored-terms dictionary (WHP with ``anchors="auto"``)."""
    forget: LMDataset
    retain: LMDataset
    tokenizer: object = None
    seed: int = 0
    on_epoch: Optional[Callable[[int, torch.nn.Module], None]] = None
    anchor_terms: Optional[Callable[[], dict]] = None


@dataclasses.dataclass
class Method(HyperparameterMethod):
    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""       # "Authors, Title, Venue Year (arXiv id)"
    summary: ClassVar[str] = ""     # one line for `obliviate methods`
    reads_retain: ClassVar[bool] = True

    @abc.abstractmethod
    def unlearn(self, model: torch.nn.Module, data: UnlearnData, loop: Loop) -> torch.nn.Module:
        """Return the unlearned model (``model`` is a copy of the target and may be changed in place)."""

    def __post_init__(self):
        super().__post_init__()
        for f in ("epochs", "batch_size"):
            if hasattr(self, f) and getattr(self, f) < 1:
                raise ObliviateError(f"{self.name}: {f} must be at least 1")
        if hasattr(self, "lr") and self.lr <= 0:
            raise ObliviateError(f"{self.name}: lr must be positive")


@dataclasses.dataclass
class LossMethod(Method):
    """Gradient-based unlearning over (forget batch, retain batch) pairs with AdamW at a constant learning rate.

    Subclasses override ``forget_loss`` (and ``retain_loss`` when they read the retain set). Each forget example is
    paired with a retain example drawn at random at every access (``Paired``). The batches are the global batch split
    evenly over processes, token means run over the global batch's tokens and dropout is off while unlearning, so the
    result does not depend on the number of processes (up to floating-point summation order)."""
    needs_reference: ClassVar[bool] = False
    # the frozen reference's log p(y|x) of each forget example, computed once before training instead of at every
    # step (the reference and the forget set never change): a step then costs what a fine-tuning step costs
    caches_reference_logprob: ClassVar[bool] = False

    epochs: int = 5
    lr: float = 1e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    gamma: float = 1.0   # weight of the forget loss
    alpha: float = 1.0   # weight of the retain loss

    @abc.abstractmethod
    def forget_loss(self, model, batch, reference) -> torch.Tensor:
        """The method's loss on a forget batch (what distinguishes one loss-based method from another)."""

    def retain_loss(self, model, batch, reference) -> Optional[torch.Tensor]:
        return None  # no retain term: the retain set is never read

    def loss(self, model, batch, reference) -> torch.Tensor:
        n_forget = 4 if len(batch) in (4, 7) else 3  # forget tensors (+ cached reference log-likelihood), retain
        forget, retain = batch[:n_forget], batch[n_forget:]
        total = self.gamma * self.forget_loss(model, forget, reference)
        if retain:
            r = self.retain_loss(model, retain, reference)
            total = total + self.alpha * r
        return total

    def uses_retain(self) -> bool:
        return type(self).retain_loss is not LossMethod.retain_loss

    def unlearn(self, model, data, loop):
        reference = frozen_copy(model, loop) if self.needs_reference else None
        cached = None
        if self.caches_reference_logprob:
            cached = reference_logprobs(reference, data.forget, loop, per_process_batch(self.batch_size, loop))
        pairs = Paired(data.forget, data.retain if self.uses_retain() else None, seed=data.seed, forget_extra=cached)
        loader = loop.loader(pairs, per_process_batch(self.batch_size, loop), shuffle=True, seed=data.seed)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.lr,
                                      weight_decay=self.weight_decay)

        def before_epoch(epoch):
            pairs.set_epoch(epoch)
            if epoch > 0 and data.on_epoch is not None:
                data.on_epoch(epoch, model)

        with without_dropout(model):
            model = loop.fit(model, optimizer, loader, lambda m, b: self.loss(m, b, reference), self.epochs,
                             desc=self.name, before_epoch=before_epoch)
        if data.on_epoch is not None:
            data.on_epoch(self.epochs, model)
        return model


# ------------------------------------------------------------------------------------------- shared loss terms

def retain_nll(model, batch) -> torch.Tensor:
    """GradDiff's retain term: the usual NLL on retain completions."""
    return nll(model, *batch)


def retain_kl(model, batch, reference) -> torch.Tensor:
    """KL(p_ref || p_theta) of the next-token distributions, mean over retain completion tokens.

    Both sides are log-softmax outputs (MUSE's reference code takes the KL of raw logits, which is not a divergence)."""
    ids, mask, labels = batch
    width = int(mask.sum(1).max().item())
    ids, mask, labels = ids[:, :width], mask[:, :width], labels[:, :width]
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    with torch.no_grad():
        logq = torch.log_softmax(reference(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    valid = (labels[:, 1:] != -100).float()
    kl = (logq.exp() * (logq - logp)).sum(-1)
    return (kl * valid).sum() / token_denominator(valid.sum())


@torch.no_grad()
def reference_logprobs(reference, data: LMDataset, loop: Loop, batch_size: int) -> torch.Tensor:
    """log p_ref(y|x) of every example, in order ([N], float32, CPU); every process gets all of them."""
    out = []
    for ids, mask, labels in loop.loader(data, batch_size):
        out.append(loop.accelerator.gather_for_metrics(sequence_logprob(reference, ids, mask, labels)).float().cpu())
    return torch.cat(out)


register_method = METHODS.register_method


def create(name: str, **hyperparameters) -> Method:
    """Instantiate a registered method; unknown hyperparameters are an error that lists the known ones."""
    return METHODS.instantiate(name, **hyperparameters)


__all__ = ["METHODS", "Method", "LossMethod", "UnlearnData", "register_method", "create", "frozen_copy",
           "retain_nll", "retain_kl", "token_logprobs",
           "without_dropout"]
