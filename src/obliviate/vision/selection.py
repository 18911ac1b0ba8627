"""Worst-case forget sets (Fan et al., "Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine
Unlearning", ECCV 2024, arXiv 2403.07362).

Which m training samples (or classes) are hardest to forget? A bi-level problem over weights w in [0, 1]^N with
sum(w) = m: the lower level unlearns with per-sample weights (for fine-tuning, minimise sum_i (1 - w_i) l_i(theta));
the upper level chooses w so that the selected samples keep a low loss after unlearning,
min_w sum_i w_i l_i(theta(w)) + gamma ||w||^2. Each selection epoch reloads the original weights, unrolls
``unroll_epochs`` epochs of signSGD on the lower level, computes the per-sample losses l_i(theta(w)), takes the
first-order step w <- w - w_lr (l + 2 gamma w) and projects back onto {0 <= w <= 1, sum w = m} (bisection on the
shift mu of w = clip(a - mu, 0, 1)). At the end the top-m weights are the worst-case forget set.

Defaults (paper): 10 selection epochs, 10 unroll epochs, theta_lr 0.01, w_lr 0.01, gamma 0.
As in the reference code (OPTML-Group/Unlearn-WorstCase), where the paper is silent: w starts as a random binary
m-subset (seeded), the lower level sums the weighted per-sample losses over each minibatch, and the l1-sparse lower
level adds ``l1_t * ||theta||_1`` with l1 = 1e-3 decaying linearly to zero over the unroll epochs.
Choices of this implementation: the lower level's signSGD runs through the shared training loop over shuffled
minibatches (seeded per selection epoch); the upper-level gradient is first order (it ignores the implicit dependence
of theta on w); per-sample upper-level losses are computed in eval mode (the reference uses train mode); ties in the
final top-m go to the lower index.

``worst-case:F`` is a forget spec: the selection runs on the original model trained with the preset recipe (the same
cached model the benchmark uses) and is cached on disk keyed by everything that determines it.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import Tagged
from ..errors import ObliviateError
from ..loop import Loop
from ..store import atomic_write_text, config_hash, default_cache_dir
from ..task import FORGET_KINDS, ForgetKind, Task, _check_fraction, read_indices


class SignSGD(torch.optim.Optimizer):
    """p <- p - lr * sign(grad): the lower-level optimiser of the selection (cheap and scale-free)."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])


def project_capped_simplex(a: np.ndarray, m: float, tol: float = 1e-12, max_iter: int = 200) -> np.ndarray:
    """Euclidean projection of ``a`` onto {0 <= w <= 1, sum w = m}: w = clip(a - mu, 0, 1), mu found by bisection.

    sum(clip(a - mu, 0, 1)) falls monotonically in mu from len(a) (mu <= min(a) - 1) to 0 (mu >= max(a)).
    """
    a = np.asarray(a, dtype=np.float64)
    if not 0 <= m <= len(a):
        raise ObliviateError(f"cannot project onto sum(w) = {m} with {len(a)} weights in [0, 1]")
    lo, hi = float(a.min()) - 1.0, float(a.max())
    for _ in range(max_iter):
        mu = 0.5 * (lo + hi)
        if np.clip(a - mu, 0.0, 1.0).sum() > m:
            lo = mu
        else:
            hi = mu
        if hi - lo < tol:
            break
    return np.clip(a - 0.5 * (lo + hi), 0.0, 1.0)


def _l1(model):
    return sum(p.abs().sum() for p in model.parameters())


# Lower-level unlearning objectives with per-sample forget weights w (a batch sum of weighted per-sample losses, as
# in the reference code); ``l1`` is the current (decayed) l1 weight.
LOWER_LEVEL = {
    "finetune": lambda model, losses, w, sel, l1: ((1 - w) * losses).sum(),
    "l1-sparse": lambda model, losses, w, sel, l1: ((1 - w) * losses).sum() + l1 * _l1(model),
    "neggrad": lambda model, losses, w, sel, l1: -(w * losses).sum(),
    "neggrad+": lambda model, losses, w, sel, l1: (sel.beta * ((1 - w) * losses).sum()
                                                  - (1 - sel.beta) * (w * losses).sum()),
}


@dataclass
class WorstCaseSelector:
    """Bi-level worst-case forget-set selection (data-wise, or ``classwise`` over whole classes).

    Args:
        size: fraction of the training samples (or of the classes, class-wise) when < 1, else a count.
        method: lower-level unlearning objective: finetune (paper default), l1-sparse, neggrad, neggrad+.
        epochs: selection epochs (10). unroll_epochs: signSGD epochs per selection epoch (10).
        theta_lr: signSGD step (0.01). w_lr: upper-level step (0.01). gamma: l2 weight on w (0).
        l1: initial l1 weight of the l1-sparse lower level, decaying linearly to 0 over the unroll (1e-3, the
        reference's). beta: retain weight of neggrad+ (0.95). batch_size: lower-level minibatch (256).
        seed: the random binary start of w and the data order of the unrolls.
    """

    size: float = 0.1
    method: str = "finetune"
    classwise: bool = False
    epochs: int = 10
    unroll_epochs: int = 10
    theta_lr: float = 0.01
    w_lr: float = 0.01
    gamma: float = 0.0
    l1: float = 1e-3
    beta: float = 0.95
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self):
        if self.method not in LOWER_LEVEL:
            raise ObliviateError(f"worst-case selection: unknown lower-level method {self.method!r}; "
                                 f"use one of {', '.join(sorted(LOWER_LEVEL))}")
        if not self.size > 0:
            raise ObliviateError(f"worst-case selection: size must be positive (a fraction < 1 or a count), not {self.size}")
        if self.epochs < 1 or self.unroll_epochs < 1:
            raise ObliviateError("worst-case selection needs at least one selection epoch and one unroll epoch")

    def count(self, n: int) -> int:
        """m: how many samples (or classes) of ``n`` are selected."""
        m = int(round(self.size * n)) if self.size < 1 else int(self.size)
        if not 1 <= m < n:
            unit = "classes" if self.classwise else "training samples"
            raise ObliviateError(f"worst-case selection: size {self.size} selects {m} of {n} {unit}; "
                                 f"it must select at least one and leave at least one")
        return m

    def select(self, original: torch.nn.Module, task: Task, loop: Optional[Loop] = None) -> np.ndarray:
        """Training indices of the worst-case forget set for ``original`` trained on all of ``task``'s training data."""
        loop = loop or Loop(progress=False)
        labels = task.train_labels
        units = labels if self.classwise else np.arange(len(labels))  # which weight each sample reads
        n = task.num_classes if self.classwise else len(labels)
        m = self.count(n)
        w = self.initial_weights(n, m)
        labels_t = torch.as_tensor(labels)
        self.history_ = []
        for epoch in tqdm(range(self.epochs), desc="worst-case selection", disable=not loop.progress, leave=False):
            losses = self._unlearned_losses(original, task, w[units], labels_t, loop, epoch)
            if self.classwise:
                losses = np.bincount(labels, weights=losses, minlength=n) / np.maximum(1, np.bincount(labels, minlength=n))
            w = project_capped_simplex(w - self.w_lr * (losses + 2 * self.gamma * w), m)
            self.history_.append({"epoch": epoch, "objective": float((w * losses).sum())})
        self.weights_ = w
        top = np.argsort(-w, kind="stable")[:m]
        return np.flatnonzero(np.isin(labels, top)) if self.classwise else np.sort(top)

    def initial_weights(self, n: int, m: int) -> np.ndarray:
        """A random binary m-subset of the n units (seeded), the reference code's start."""
        w = np.zeros(n)
        w[np.random.default_rng(self.seed).choice(n, size=m, replace=False)] = 1.0
        return w

    def l1_at(self, unroll_epoch: int) -> float:
        """The l1 weight in unroll epoch t: l1 * (1 - t / unroll_epochs)."""
        return self.l1 * (1.0 - unroll_epoch / self.unroll_epochs)

    def _unlearned_losses(self, original, task, sample_w, labels_t, loop, epoch) -> np.ndarray:
        """Reload theta_o, unroll signSGD on the weighted lower level, return per-sample losses l_i(theta(w))."""
        model = copy.deepcopy(original)
        loop.seed(self.seed + epoch)
        data = Tagged(task.train, np.arange(len(sample_w)), sample_w)
        loader = loop.loader(data, self.batch_size, shuffle=True, seed=self.seed + epoch)
        objective = LOWER_LEVEL[self.method]
        state = {"l1": self.l1}

        def before_epoch(t):
            state["l1"] = self.l1_at(t)

        def loss_fn(net, batch):
            x, y, wb = batch
            return objective(net, F.cross_entropy(net(x), y, reduction="none"), wb, self, state["l1"])

        model = loop.fit(model, SignSGD(model.parameters(), self.theta_lr), loader, loss_fn, self.unroll_epochs,
                         desc=f"selection epoch {epoch}", before_epoch=before_epoch)
        logits = loop.predict(model, task.train_eval)
        return F.cross_entropy(logits, labels_t, reduction="none").numpy().astype(np.float64)


def cached_selection(selector: WorstCaseSelector, task: Task, model_name: str, model_kwargs: dict, recipe,
                     loop: Optional[Loop] = None) -> np.ndarray:
    """The selection on the (cached) original model of ``task``'s data, itself cached on disk by everything that
    determines it: the data, the model and its recipe, the selector's settings and seed."""
    from .train import train_reference
    fp = {k: v for k, v in task.fingerprint().items() if k not in ("forget", "forget_hash")}
    key = {"task": fp, "model": model_name, "model_kwargs": dict(model_kwargs), "recipe": asdict(recipe),
           "selector": asdict(selector)}
    path = default_cache_dir() / "selections" / f"worst-case-{config_hash(key)}.txt"
    if path.exists():
        return read_indices(path, len(task.train_labels))
    loop = loop or Loop(progress=False)
    original, _ = train_reference("original", task, model_name, recipe, loop, model_kwargs=model_kwargs)
    idx = selector.select(original, task, loop)
    write_indices(path, idx, f"worst-case forget set: {key}")
    return idx


def write_indices(path, idx, comment: str = "") -> Path:
    """An index file that ``indices:PATH`` reads: optional # comment lines, then one training index per line."""
    head = "".join(f"# {line}\n" for line in comment.splitlines() if line)
    return atomic_write_text(Path(path), head + "".join(f"{int(i)}\n" for i in idx))


def _resolve_worst_case(spec, labels, num_classes, seed, context=None, **_):
    ctx = context or {}
    if "build" not in ctx:
        raise ObliviateError(f"forget spec {spec}: worst-case sets are computed on a trained model; build the task "
                             f"with obliviate.vision.make_task (it supplies the data and the preset)")
    from ..presets import load_preset
    from .train import Recipe
    model_name = ctx.get("model", "cnn")
    preset = load_preset(ctx["dataset"], model_name)
    model_kwargs = ctx.get("model_kwargs", preset["model"])
    recipe = Recipe.from_dict(ctx.get("recipe", preset["recipe"]))
    selector = WorstCaseSelector(**{**ctx.get("selection", {}), "size": spec.fraction, "seed": seed})
    selector.count(num_classes if selector.classwise else len(labels))  # a size that selects nothing fails now
    base = ctx["build"]("random:0.1")  # the same data; the original model does not depend on the forget spec
    return cached_selection(selector, base, model_name, model_kwargs, recipe, ctx.get("loop"))


FORGET_KINDS["worst-case"] = ForgetKind(_check_fraction, _resolve_worst_case)

__all__ = ["WorstCaseSelector", "SignSGD", "project_capped_simplex", "cached_selection", "write_indices",
           "LOWER_LEVEL"]
