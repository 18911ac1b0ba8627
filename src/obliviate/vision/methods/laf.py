"""LAF: Label-Agnostic Forgetting, unlearning without labels through representation VAEs and contrastive alignment."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ...errors import ObliviateError
from ...loop import check_finite
from ..models import split_model
from .base import Method, frozen_copy, optimizer_for, register_method


class RepresentationVAE(nn.Module):
    """A small VAE on representations, as in the reference code: encoder dim -> 128 -> 32 -> (mu, log sigma^2) of
    ``latent``, decoder latent -> 32 -> 128 -> dim with a sigmoid.

    Inputs are min-max scaled per dimension with the fixed range of the original representations (buffers ``lo``,
    ``span``) so that the sigmoid decoder can reach them.
    """

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, latent: int = 8):
        super().__init__()
        dim = lo.numel()
        self.register_buffer("lo", lo.clone())
        self.register_buffer("span", (hi - lo).clamp_min(1e-6))
        self.encoder = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU())
        self.mu, self.logvar = nn.Linear(32, latent), nn.Linear(32, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(),
                                     nn.Linear(128, dim), nn.Sigmoid())

    def scale(self, z: torch.Tensor) -> torch.Tensor:
        return (z.flatten(1) - self.lo) / self.span

    def forward(self, u: torch.Tensor):
        h = self.encoder(u)
        mu, logvar = self.mu(h), self.logvar(h)
        latent = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(latent), mu, logvar

    def error(self, z: torch.Tensor) -> torch.Tensor:
        """Per-sample reconstruction error of raw representations ``z``: squared error summed over dimensions, at
        the posterior mean."""
        u = self.scale(z)
        h = self.encoder(u)
        return ((self.decoder(self.mu(h)) - u) ** 2).sum(dim=1)


def vae_loss(vae: RepresentationVAE, u: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Reconstruction error summed over dimensions plus ``kl_weight`` times the KL to N(0, I), both averaged over the
    batch (the reference's scaling: a per-dimension mean would make the KL term ``dim`` times stronger)."""
    recon, mu, logvar = vae(u)
    kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1).mean()
    return ((recon - u) ** 2).sum(dim=1).mean() + kl_weight * kl


def active_dimensions(vae: RepresentationVAE, u: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions the encoder uses: Var_x(mu_j(x)) above ``threshold`` (collapsed ones sit at 0)."""
    with torch.no_grad():
        mu = vae.mu(vae.encoder(u))
    return int((mu.var(dim=0) > threshold).sum())


def extractor_unlearning_loss(error_retain: torch.Tensor, error_forget: torch.Tensor) -> torch.Tensor:
    """L_UE = sum_{D_r} exp(e / (e + 1)) - sum_{D_f} exp(e / (e + 1)), e the reconstruction error under the VAE of
    the sample's own set: remaining representations stay where VAE_r expects them, forget ones leave VAE_f's manifold."""
    s = lambda e: torch.exp(e / (e + 1)).sum()
    return s(error_retain) - s(error_forget)


def alignment_loss(z_retain, z_retain_original, z_forget, z_forget_original, tau: float) -> torch.Tensor:
    """L_RA = sum_{x in D_r} [c(x) - log sum_{x' in D_f} exp(c(x') / tau)], c = 1 - cos(z, z_original): remaining
    embeddings are pulled onto the original model's, forget embeddings pushed away from theirs."""
    c = lambda z, z0: 1 - F.cosine_similarity(z.flatten(1), z0.flatten(1), dim=1)
    return (c(z_retain, z_retain_original) - torch.logsumexp(c(z_forget, z_forget_original) / tau, 0)).sum()


class _ForgetWithRetain(Dataset):
    """Item i is (x_f, x_r): forget input i with a remaining input drawn at random, redrawn by ``reshuffle`` (every
    epoch), like the reference code's zip of a forget loader and a shuffled remaining loader. Inputs only."""

    def __init__(self, forget: Dataset, retain: Dataset, rng: np.random.Generator):
        self.forget, self.retain, self.rng = forget, retain, rng
        self.reshuffle()

    def reshuffle(self):
        n_f, n_r = len(self.forget), len(self.retain)
        self.partner = self.rng.choice(n_r, size=n_f, replace=n_r < n_f)

    def __len__(self):
        return len(self.forget)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, idx):
        return _inputs(self.forget, list(idx)), _inputs(self.retain, self.partner[np.asarray(idx)].tolist())


def _inputs(ds: Dataset, idx) -> torch.Tensor:
    batch = ds.__getitems__(idx) if callable(getattr(ds, "__getitems__", None)) else [ds[i] for i in idx]
    if isinstance(batch, tuple):
        return batch[0]
    return torch.stack([torch.as_tensor(b[0]) for b in batch])


@register_method
@dataclass
class LAF(Method):
    """LAF (Shen et al., "Label-Agnostic Forgetting: A Supervision-Free Unlearning in Deep Models", ICLR 2024,
    arXiv 2404.00506). Never reads a label: the runner hands it ``task.without_labels()``.

    The model is an extractor g and a head h (built-in models: ``features`` and ``head``; other models: name the two
    submodules with ``extractor``/``head`` or pass ``split(model) -> (extractor, head)``).
    Stage 0: two VAEs on the original representations, VAE_r on the whole training set and VAE_f on D_f (loss:
    squared reconstruction error summed over dimensions + kl_weight * KL, averaged over the batch).
    Then, every step, on a batch of ``batch_size`` forget samples and as many remaining samples (redrawn every epoch),
    both stages run one after the other, each with its own Adam optimiser: extractor unlearning
    (``extractor_unlearning_loss``, learning rate ``lr_ue``: keep D_r representations reconstructable by VAE_r, drive
    D_f representations off VAE_f) and representation alignment (``alignment_loss``, learning rate ``lr_ra``: pull
    D_r embeddings onto the original's and push D_f embeddings away, c = 1 - cos(z, z_orig), temperature ``tau``).
    The head is untouched; ``laf+r`` adds a labelled repair of the head on D_r.

    Hyperparameters (the reference code's CNN settings for MNIST, ``hyperparameter.md``): latent=8, epochs=20,
    lr_ue=5e-5, lr_ra=1e-4, tau=5.0 (random-data unlearning; 20 for class unlearning, set by the class presets),
    batch_size=32 (forget) + 32 (remaining); VAEs: vae_epochs=10, vae_lr=1e-3 (Adam), kl_weight=0.025,
    vae_batch_size=32; seed=0. (ResNet settings: latent 16, 40 epochs, lr_ue 1e-5, lr_ra 4e-5 / 5e-5, tau 20 / 5.)

    Deliberate departures from the reference code (ShaofeiShen768/LAF): representations are min-max scaled with the
    original range before the sigmoid VAEs (features after a ReLU are not bounded by 1; the reference's fc1
    embeddings are not either); reconstruction errors during unlearning are taken at the posterior mean (the
    reference samples z), so the loss is deterministic given the batch.

    Example:
        >>> unlearned = LAF().unlearn(copy.deepcopy(original), task.without_labels(), Loop())
    """

    name = "laf"
    paper = "Shen et al., Label-Agnostic Forgetting: A Supervision-Free Unlearning in Deep Models, ICLR 2024 (arXiv 2404.00506)"
    summary = "label-free: representation VAEs drive forget features away, contrastive alignment keeps the rest"
    uses_labels = False

    vae_epochs: int = 10
    vae_lr: float = 1e-3
    vae_batch_size: int = 32
    kl_weight: float = 0.025
    latent: int = 8
    epochs: int = 20
    lr_ue: float = 5e-5
    lr_ra: float = 1e-4
    tau: float = 5.0
    batch_size: int = 32
    extractor: Optional[str] = None
    head: Optional[str] = None
    split: Optional[Callable[[nn.Module], Tuple[nn.Module, nn.Module]]] = None
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if (self.extractor is None) != (self.head is None):
            raise ObliviateError(f"{self.name}: name both the extractor and the head submodules, or neither")
        if self.split is not None and not callable(self.split):
            raise ObliviateError(f"{self.name}: split must be a callable model -> (extractor, head); to name "
                                 f"submodules use extractor=NAME and head=NAME")
        if self.tau <= 0 or self.latent < 1:
            raise ObliviateError(f"{self.name}: tau must be positive and latent at least 1")

    def params(self) -> dict:
        d = asdict(self)
        if self.split is not None:
            d["split"] = getattr(self.split, "__qualname__", repr(self.split))
        return d

    def parts(self, model: nn.Module) -> Tuple[nn.Module, nn.Module]:
        """(extractor, head) of ``model``."""
        if self.split is not None:
            return self.split(model)
        if self.extractor is not None:
            try:
                return model.get_submodule(self.extractor), model.get_submodule(self.head)
            except AttributeError as e:
                raise ObliviateError(f"{self.name}: {e}") from None
        return split_model(model)

    def fit_vae(self, reps: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, loop, tag: str) -> RepresentationVAE:
        vae = RepresentationVAE(lo, hi, self.latent)
        data = TensorDataset(vae.scale(reps))
        loader = loop.loader(data, self.vae_batch_size, shuffle=True, seed=self.seed)
        opt = optimizer_for(vae.parameters(), "adam", self.vae_lr)
        vae = loop.fit(vae, opt, loader, lambda m, b: vae_loss(m, b[0], self.kl_weight), self.vae_epochs, desc=tag)
        for p in vae.parameters():
            p.requires_grad_(False)
        return vae.eval()

    def unlearn(self, model, task, loop):
        extractor, _ = self.parts(model)
        forget, retain = task.train_split("forget"), task.train_split("retain")
        reps_f = loop.predict(extractor, task.forget).flatten(1)
        reps_r = loop.predict(extractor, task.retain).flatten(1)
        both = torch.cat([reps_f, reps_r])  # the whole training set
        lo, hi = both.min(0).values, both.max(0).values
        loop.seed(self.seed + task.seed)
        self.vae_r_ = self.fit_vae(both, lo, hi, loop, "laf: VAE (training set)")
        self.vae_f_ = self.fit_vae(reps_f, lo, hi, loop, "laf: VAE (forget)")
        vae_r, vae_f = loop.place(self.vae_r_), loop.place(self.vae_f_)
        original = frozen_copy(extractor, loop)
        pairs = _ForgetWithRetain(forget, retain, np.random.default_rng(self.seed + task.seed))
        loader = loop.loader(pairs, self.batch_size, shuffle=True, seed=self.seed + task.seed)
        opt_ue = optimizer_for(extractor.parameters(), "adam", self.lr_ue)
        opt_ra = optimizer_for(extractor.parameters(), "adam", self.lr_ra)
        self.history_ = []  # (stage, loss) per stage and step
        batch_of = {}

        def before_epoch(epoch):
            if epoch > 0:
                pairs.reshuffle()

        def unlearn_step(net, batch):  # stage 1, stepped by the loop with opt_ue
            x_f, x_r = batch
            batch_of["x"] = batch
            loss = extractor_unlearning_loss(vae_r.error(net(x_r).flatten(1)), vae_f.error(net(x_f).flatten(1)))
            self.history_.append(("unlearn", float(loss.detach())))
            return loss

        def align_step(net):  # stage 2 on the same batch, after stage 1's step, with opt_ra
            x_f, x_r = batch_of["x"]
            with torch.no_grad():
                z0_f, z0_r = original(x_f), original(x_r)
            loss = alignment_loss(net(x_r), z0_r, net(x_f), z0_f, self.tau)
            check_finite(loss, "laf: alignment", 0, len(self.history_))
            opt_ra.zero_grad(set_to_none=True)
            loss.backward()
            opt_ra.step()
            self.history_.append(("align", float(loss.detach())))

        loop.fit(extractor, opt_ue, loader, unlearn_step, self.epochs, desc="laf", before_epoch=before_epoch,
                 after_step=align_step)
        return model


@register_method
@dataclass
class LAFR(LAF):
    """LAF+R (Shen et al., "Label-Agnostic Forgetting: A Supervision-Free Unlearning in Deep Models", ICLR 2024,
    arXiv 2404.00506): label-free LAF (run on the task with labels hidden), then a supervised repair of the head only,
    cross-entropy on the labelled remaining data D_r over the frozen unlearned extractor's representations.

    Extra hyperparameters: head_epochs=5, head_lr=1e-4 (Adam), as in the reference code's classifier repair.
    """

    name = "laf+r"
    paper = LAF.paper
    summary = "LAF, then a labelled repair of the classifier head on the remaining data"
    uses_labels = True

    head_epochs: int = 5
    head_lr: float = 1e-4

    def unlearn(self, model, task, loop):
        model = super().unlearn(model, task.without_labels(), loop)
        extractor, head = self.parts(model)
        reps = loop.predict(extractor, task.retain).flatten(1)  # eval mode: the extractor is frozen here
        data = TensorDataset(reps, torch.as_tensor(task.labels("retain")))
        loader = loop.loader(data, self.batch_size, shuffle=True, seed=self.seed + task.seed)
        opt = optimizer_for(head.parameters(), "adam", self.head_lr)
        loop.fit(head, opt, loader, lambda h, b: F.cross_entropy(h(b[0]), b[1]), self.head_epochs, desc="laf+r: head")
        return model
