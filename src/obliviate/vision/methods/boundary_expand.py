"""Boundary Expanding: train the forget samples into an extra shadow class, then remove that class."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ObliviateError
from .base import Method, optimizer_for, register_method


def output_layer(model: nn.Module, num_classes: int):
    """(parent module, attribute name, layer) of the last ``nn.Linear`` with ``num_classes`` outputs."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_classes:
            found = name
    if found is None:
        raise ObliviateError(f"boundary-expand needs the model's output layer to be an nn.Linear with {num_classes} "
                             f"outputs; none was found")
    parent_name, _, attr = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, getattr(parent, attr)


@torch.no_grad()
def resized(layer: nn.Linear, out_features: int) -> nn.Linear:
    """A copy of ``layer`` with ``out_features`` outputs: shared rows copied, extra rows freshly initialised.
    A pruned layer stays pruned: the shared rows keep their mask, extra rows are dense."""
    new = nn.Linear(layer.in_features, out_features, bias=layer.bias is not None, device=layer.weight.device,
                    dtype=layer.weight.dtype)
    k = min(out_features, layer.out_features)
    new.weight[:k] = layer.weight[:k]
    if layer.bias is not None:
        new.bias[:k] = layer.bias[:k]
    mask = getattr(layer, "weight_mask", None)
    if mask is not None:
        from ..prune import mask_layer
        full = torch.ones_like(new.weight)
        full[:k] = mask[:k]
        mask_layer(new, full)
    return new


@register_method
@dataclass
class BoundaryExpand(Method):
    """Boundary Expanding (Chen et al., "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
    Decision Space", CVPR 2023, arXiv 2303.11570).

    The output layer gets a (K+1)-th shadow neuron; the whole network is fine-tuned with cross-entropy to put every
    forget sample into the shadow class, which spreads the forgotten region away; then the shadow neuron is pruned,
    leaving the original K outputs. The retain set is never read. Instance unlearning sends each forget sample to the
    shadow class in the same way.

    Hyperparameters (CIFAR-10 / ResNet-18 defaults): epochs=10, lr=1e-5 (SGD), momentum=0.9, batch_size=64, seed=0.

    Needs the output layer to be an ``nn.Linear`` with K outputs (the last such layer is used). On a pruned model
    the output layer keeps its pruning mask through the expansion and the pruning of the shadow neuron.

    Example:
        >>> unlearned = BoundaryExpand().unlearn(copy.deepcopy(original), task, Loop())
    """

    name = "boundary-expand"
    paper = ("Chen et al., Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision Space, "
             "CVPR 2023 (arXiv 2303.11570)")
    summary = "train forget samples into an extra shadow class, then prune it"
    reads_retain = False

    epochs: int = 10
    lr: float = 1e-5
    momentum: float = 0.9
    batch_size: int = 64
    seed: int = 0

    def unlearn(self, model, task, loop):
        k = task.num_classes
        parent, attr, head = output_layer(model, k)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + task.seed)
            setattr(parent, attr, resized(head, k + 1))
        loader = loop.loader(task.train_split("forget"), self.batch_size, shuffle=True, seed=self.seed + task.seed)

        def to_shadow(m, batch):
            x = batch[0]
            return F.cross_entropy(m(x), torch.full((len(x),), k, dtype=torch.long, device=x.device))

        optimizer = optimizer_for(model.parameters(), "sgd", self.lr, 0.0, self.momentum)
        model = loop.fit(model, optimizer, loader, to_shadow, self.epochs, desc="boundary-expand")
        parent, attr, _ = output_layer(model, k + 1)
        setattr(parent, attr, resized(getattr(parent, attr), k))
        return model
