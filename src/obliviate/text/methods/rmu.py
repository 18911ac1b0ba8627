"""RMU: scramble the forget set's internal representations at one layer, keep the retain set's."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List

import torch

from ...errors import ObliviateError
from ..train import IGNORE, Paired, per_process_batch, token_denominator, without_dropout
from .base import Method, frozen_copy, register_method

_LAYER = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks)\.(\d+)\.mlp\.")


def mlp_parameters(model, layers: List[int]):
    """(name, parameter) of the MLP blocks of the given layers (GPT-2 ``h.i.mlp``, Llama ``layers.i.mlp``)."""
    out = []
    for name, p in model.named_parameters():
        m = _LAYER.search(name)
        if m and int(m.group(1)) in layers:
            out.append((name, p))
    return out


def num_layers(model) -> int:
    config = model.config
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if n is None:
        raise ObliviateError("rmu: cannot tell the number of layers of this model (no num_hidden_layers in its config)")
    return int(n)


def hidden_at(model, ids, mask, layer: int) -> torch.Tensor:
    """Output of transformer layer ``layer`` (0-based): ``hidden_states[layer + 1]``."""
    return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer + 1].float()


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked token positions and all hidden dimensions (under several processes the
    mean runs over the global batch's positions)."""
    m = mask.unsqueeze(-1).to(a.dtype)
    return ((a - b) ** 2 * m).sum() / (token_denominator(m.sum()) * a.shape[-1])


def answer_mask(labels: torch.Tensor) -> torch.Tensor:
    """The positions of the completion tokens (the answer of a QA example, every token of a document)."""
    return labels != IGNORE


def rmu_loss(model, frozen, batch, layer: int, control: torch.Tensor, alpha: float) -> torch.Tensor:
    """``MSE(h_l(forget), control) + alpha * MSE(h_l(retain), h_l^frozen(retain))`` over answer tokens."""
    f_ids, f_mask, f_labels, r_ids, r_mask, r_labels = batch
    h_f = hidden_at(model, f_ids, f_mask, layer)
    forget = masked_mse(h_f, control.to(h_f.device).expand_as(h_f), answer_mask(f_labels))
    h_r = hidden_at(model, r_ids, r_mask, layer)
    with torch.no_grad():
        h_r_frozen = hidden_at(frozen, r_ids, r_mask, layer)
    return forget + alpha * masked_mse(h_r, h_r_frozen, answer_mask(r_labels))


@register_method
@dataclass
class RMU(Method):
    """RMU, Representation Misdirection for Unlearning (Li et al., "The WMDP Benchmark: Measuring and Reducing
    Malicious Use With Unlearning", ICML 2024, arXiv 2403.03218).

    At layer ``layer`` the activations of forget tokens are pushed toward ``steering_coeff * u`` (u a fixed random unit
    vector, drawn once from U[0, 1)^d and normalised) and the activations of retain tokens are kept equal to the frozen
    target's: ``L = MSE(h_l(forget), c * u) + alpha * MSE(h_l(retain), h_l^frozen(retain))`` over the answer tokens
    (the completion; every token of a document), as OpenUnlearning does: a QA prompt is shared by forget and retain
    questions, so pulling its activations both ways would only fight itself. Each forget example is paired with a
    retain example drawn at random at every access.
    Only the MLP weights of ``update_layers`` train; every other weight stays exactly as it was.

    Hyperparameters (paper, Zephyr-7B): layer=7, update_layers="5,6,7", steering_coeff=6.5, alpha=1200.0, lr=5e-5
    (AdamW), batch_size=4, max_batches=150 (one pass over at most this many forget batches), epochs=1, seed=0.
    Small models need a layer index that exists: ``layer`` counts from 0 and must be below the number of layers.

    Differs from the reference code, following the paper: all MLP parameters of the update layers train (the code
    updates only the MLP's output projection), and the losses read the answer tokens only (the code includes padding and
    prompts).
    """

    name = "rmu"
    paper = ("Li et al., The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning, ICML 2024 "
             "(arXiv 2403.03218)")
    summary = "steer forget activations at one layer to a random direction, keep retain activations"

    layer: int = 7
    update_layers: str = "5,6,7"
    steering_coeff: float = 6.5
    alpha: float = 1200.0
    lr: float = 5e-5
    batch_size: int = 4
    max_batches: int = 150
    epochs: int = 1
    seed: int = 0

    def layers(self) -> List[int]:
        try:
            return sorted({int(x) for x in str(self.update_layers).split(",") if x.strip()})
        except ValueError:
            raise ObliviateError(f"rmu: update_layers must be comma-separated integers, "
                                 f"not {self.update_layers!r}") from None

    def control_vector(self, hidden_size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        u = torch.rand(hidden_size, generator=g)
        return self.steering_coeff * u / u.norm()

    def unlearn(self, model, data, loop):
        n, layers = num_layers(model), self.layers()
        if not 0 <= self.layer < n or not layers or not all(0 <= i < n for i in layers):
            raise ObliviateError(f"rmu: layer {self.layer} and update_layers {self.update_layers!r} must lie in "
                                 f"0..{n - 1} for this {n}-layer model")
        # under LoRA only the adapters of those layers train; frozen base weights stay frozen
        chosen = [(name, p) for name, p in mlp_parameters(model, layers) if p.requires_grad]
        if not chosen:
            raise ObliviateError("rmu: found no MLP parameters (h.i.mlp / layers.i.mlp) in the update layers")
        trainable = {name: p.requires_grad for name, p in model.named_parameters()}
        ids_chosen = {id(p) for _, p in chosen}
        for p in model.parameters():
            p.requires_grad_(id(p) in ids_chosen)
        frozen = frozen_copy(model, loop)
        control = self.control_vector(model.config.hidden_size)
        pairs = Paired(data.forget, data.retain, seed=data.seed, limit=self.max_batches * self.batch_size)
        loader = loop.loader(pairs, per_process_batch(self.batch_size, loop), shuffle=True, seed=data.seed)
        optimizer = torch.optim.AdamW([p for _, p in chosen], lr=self.lr)

        def loss_fn(m, batch):
            return rmu_loss(m, frozen, batch, self.layer, control, self.alpha)

        def before_epoch(epoch):
            pairs.set_epoch(epoch)
            if epoch > 0 and data.on_epoch is not None:
                data.on_epoch(epoch, model)

        try:
            with without_dropout(model):
                model = loop.fit(model, optimizer, loader, loss_fn, self.epochs, desc=self.name,
                                 before_epoch=before_epoch)
        finally:
            for name, p in model.named_parameters():
                p.requires_grad_(trainable.get(name, True))
        if data.on_epoch is not None:
            data.on_epoch(self.epochs, model)
        return model
