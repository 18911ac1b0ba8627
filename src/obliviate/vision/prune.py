"""Prune first, then unlearn (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023,
arXiv 2304.04934).

Global unstructured L1-magnitude pruning of every convolution weight through ``torch.nn.utils.prune`` (convolutions
only, as in the reference code's ``pruning_model``: linear layers and the classifier head stay dense): the module
keeps ``weight_orig`` (a parameter) and ``weight_mask`` (a buffer), and a forward pre-hook recomputes
``weight = weight_orig * weight_mask`` before every forward, so any unlearning method that trains the pruned model keeps
the mask in force (masked weights stay exactly zero whatever happens to ``weight_orig``).

The sparse original model follows the paper's pruning pipeline (the reference code's ``main_imp.py --prune_type
rewind_lt``): train dense, then per round prune a fraction ``p`` of the remaining weights, rewind the surviving
weights to their values after ``rewind_epoch`` epochs of the dense run, and retrain with the mask. One round is OMP
(one-shot magnitude pruning, the paper's headline setting at 95% sparsity); several rounds are IMP with
``p = 1 - (1 - sparsity) ** (1 / rounds)``. The gold model of a pruned run is retrained from scratch on D_r with the
same final mask. All models are cached with the pruning configuration in their key.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from safetensors import safe_open
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..errors import ObliviateError
from ..loop import Loop
from ..store import ModelCache, load_checkpoint
from ..task import Task

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d)  # convolutions only (the reference prunes nn.Conv2d)


@dataclass(frozen=True)
class PruneConfig:
    """How the sparse original is made: target ``sparsity`` of convolution weights, ``rounds`` (1 = OMP, more = IMP),
    and ``rewind_epoch`` (None: 8/182 of the recipe's epochs, the reference code's rewind point, at least 1)."""
    sparsity: float
    rounds: int = 1
    rewind_epoch: Optional[int] = None

    def __post_init__(self):
        if not 0.0 < self.sparsity < 1.0:
            raise ObliviateError(f"--prune {self.sparsity}: the sparsity must lie strictly between 0 and 1, e.g. 0.95")
        if self.rounds < 1:
            raise ObliviateError(f"--prune-rounds {self.rounds}: needs at least one pruning round")
        if self.rewind_epoch is not None and self.rewind_epoch < 0:
            raise ObliviateError("the rewind epoch must be >= 0")

    @property
    def rate_per_round(self) -> float:
        return 1.0 - (1.0 - self.sparsity) ** (1.0 / self.rounds)

    def rewind_for(self, epochs: int) -> int:
        if self.rewind_epoch is not None:
            return min(self.rewind_epoch, epochs)
        return min(epochs, max(1, round(epochs * 8 / 182)))


def prunable(model: nn.Module) -> List[Tuple[nn.Module, str]]:
    """(module, "weight") for every convolution: the weights that the reference code prunes."""
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def is_pruned(model: nn.Module) -> bool:
    return any(torch_prune.is_pruned(m) for m, _ in prunable(model))


def refresh(model: nn.Module) -> nn.Module:
    """Recompute each pruned ``weight`` as a plain tensor (a leaf), so that it is current and ``deepcopy`` works.

    After a forward with gradients the pre-hook leaves ``weight`` as a non-leaf tensor, which ``copy.deepcopy``
    refuses; a forward hook calls this after every forward, so copies can be taken at any time.
    """
    with torch.no_grad():
        for m, name in prunable(model):
            if hasattr(m, f"{name}_mask"):
                setattr(m, name, getattr(m, f"{name}_orig") * getattr(m, f"{name}_mask"))
    return model


def _detach_after_forward(module, inputs, output):
    module.weight = module.weight.detach()  # the graph of this forward already holds the masked weight


def _track(model: nn.Module) -> nn.Module:
    for m, _ in prunable(model):
        if hasattr(m, "weight_mask") and _detach_after_forward not in m._forward_hooks.values():
            m.register_forward_hook(_detach_after_forward)
    return refresh(model)


def prune_global(model: nn.Module, amount: float) -> nn.Module:
    """Prune ``amount`` of the still-unpruned convolution weights, globally by |weight| (L1), in place."""
    params = prunable(model)
    if not params:
        raise ObliviateError(f"{type(model).__name__} has no convolution to prune")
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=float(amount))
    return _track(model)


def masks(model: nn.Module) -> Dict[str, torch.Tensor]:
    """{module name: mask} of a pruned model (copies, on the CPU)."""
    return {n: m.weight_mask.detach().cpu().clone() for n, m in model.named_modules() if hasattr(m, "weight_mask")}


def apply_masks(model: nn.Module, mask_by_name: Dict[str, torch.Tensor]) -> nn.Module:
    """Reparametrise ``model`` with the given masks (its current weights become ``weight_orig``), in place."""
    modules = dict(model.named_modules())
    missing = [n for n in mask_by_name if n not in modules]
    if missing:
        raise ObliviateError(f"the masks name layers the model lacks: {missing[:3]}")
    for name, mask in mask_by_name.items():
        m = modules[name]
        if torch_prune.is_pruned(m):
            torch_prune.remove(m, "weight")
        torch_prune.custom_from_mask(m, "weight", mask.to(m.weight.device))
    return _track(model)


def mask_layer(module: nn.Module, mask: torch.Tensor) -> nn.Module:
    """Put ``mask`` in force on one layer's weight (any layer, e.g. a resized head), in place."""
    if torch_prune.is_pruned(module):
        torch_prune.remove(module, "weight")
    torch_prune.custom_from_mask(module, "weight", mask.to(module.weight.device))
    if _detach_after_forward not in module._forward_hooks.values():
        module.register_forward_hook(_detach_after_forward)
    with torch.no_grad():
        module.weight = module.weight_orig * module.weight_mask
    return module


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero effective weights over all convolutions (the pruned layers)."""
    refresh(model)
    zeros = total = 0
    for m, name in prunable(model):
        w = getattr(m, name)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(1, total)


def load_pruned(model: nn.Module, path: Path) -> nn.Module:
    """Load a safetensors checkpoint that may hold pruned layers (``*.weight_orig`` / ``*.weight_mask``) into a dense
    model of the same architecture: the mask slots are created first, then the weights are loaded strictly."""
    with safe_open(str(path), framework="pt") as f:
        names = [k[: -len(".weight_mask")] for k in f.keys() if k.endswith(".weight_mask")]
    modules = dict(model.named_modules())
    for n in names:
        if n in modules and not torch_prune.is_pruned(modules[n]):
            torch_prune.identity(modules[n], "weight")
    load_checkpoint(model, path)
    return _track(model)


def _early_weights(task: Task, model_name: str, recipe, loop: Loop, model_kwargs: dict, epochs: int) -> dict:
    """The dense run's weights after ``epochs`` epochs: the same seed, initialisation, data order, optimiser and
    schedule as the original's training, stopped early (the rewinding point)."""
    from .models import make_model
    from .train import make_optimizer
    loop.seed(task.seed)
    model = make_model(model_name, task, **model_kwargs)
    if epochs > 0:
        loop.seed(task.seed)
        opt = make_optimizer(model.parameters(), recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.momentum)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, recipe.epochs))
                 if recipe.schedule == "cosine" else None)
        loader = loop.loader(task.train_split("full"), recipe.batch_size, shuffle=True, seed=task.seed)
        from .train import cross_entropy_step
        model = loop.fit(model, opt, loader, cross_entropy_step, epochs, desc="rewind point", scheduler=sched)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def pruned_references(task: Task, model_name: str, recipe, config: PruneConfig, loop: Optional[Loop] = None,
                      cache: Optional[ModelCache] = None, model_kwargs: Optional[dict] = None):
    """Sparse original and gold models for a pruned run: returns (original, seconds, gold, seconds).

    The original's seconds add up the dense run and every pruning round; the gold model is a fresh seeded
    initialisation with the final mask, trained on D_r.
    """
    from .train import train_reference
    loop = loop or Loop(progress=False)
    cache = cache or ModelCache()
    model_kwargs = dict(model_kwargs or {})
    current, seconds = train_reference("original", task, model_name, recipe, loop, cache, model_kwargs)
    rewind = None
    for r in range(1, config.rounds + 1):
        probe = prune_global(copy.deepcopy(refresh(current)), config.rate_per_round)
        mask = masks(probe)
        key = {"prune": {**asdict(config), "round": r}}
        if rewind is None:
            rewind = _early_weights(task, model_name, recipe, loop, model_kwargs, config.rewind_for(recipe.epochs))

        def rewound(m, mask=mask):
            m.load_state_dict(rewind)
            return apply_masks(m, mask)

        current, secs = train_reference("original", task, model_name, recipe, loop, cache, model_kwargs,
                                        extra_key=key, prepare=rewound)
        seconds += secs
    final = masks(current)
    gold, gold_seconds = train_reference("gold", task, model_name, recipe, loop, cache, model_kwargs,
                                         extra_key={"prune": asdict(config)},
                                         prepare=lambda m: apply_masks(m, final))
    return _track(current), seconds, _track(gold), gold_seconds


__all__ = ["PruneConfig", "prunable", "prune_global", "masks", "apply_masks", "sparsity", "refresh", "load_pruned",
           "pruned_references", "is_pruned"]
