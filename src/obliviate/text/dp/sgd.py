"""Differentially private training of a causal LM with DP-SGD (Opacus): DP2Unlearning's unlearning-ready base model.

The base model is trained on ALL the data (forget + retain) with per-example gradient clipping and Gaussian noise;
the noise multiplier is the one Opacus's accountant finds for the target (epsilon, delta) over the planned epochs at
the sampling rate (Poisson sampling, batch size / data size). The privacy actually spent -- epsilon at delta, from
the accountant over the steps taken -- is stored beside the cached model (``privacy.json``).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

from ...errors import ObliviateError
from ...loop import Loop
from ...store import atomic_write_json
from ..train import IGNORE, LMCache, LMDataset

ACCOUNTANTS = ("rdp", "prv")


@dataclass
class DPConfig:
    """DP-SGD settings (DP2Unlearning: Opacus, clipping norm 1.0, epsilon 0.1-100)."""
    epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 32

    def check(self) -> None:
        if self.epsilon <= 0 or not 0 < self.delta < 1 or self.max_grad_norm <= 0:
            raise ObliviateError("dp: epsilon must be > 0, delta in (0, 1), max_grad_norm > 0")
        if self.accountant not in ACCOUNTANTS:
            raise ObliviateError(f"dp: accountant must be one of {', '.join(ACCOUNTANTS)}, not {self.accountant!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ObliviateError("dp: epochs and batch_size must be >= 1 and lr > 0")


def require_opacus() -> None:
    if importlib.util.find_spec("opacus") is None:
        raise ObliviateError("DP training needs Opacus: pip install 'obliviate[dp]'")


def dp_nll(model, ids, mask, labels) -> torch.Tensor:
    """Completion NLL with explicit per-example position ids (Opacus needs every input to carry the batch
    dimension: GPT-2's default position ids are shared across the batch)."""
    width = int(mask.sum(1).max()) if len(mask) else 1
    ids, mask, labels = ids[:, :width], mask[:, :width], labels[:, :width]
    position_ids = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits[:, :-1].float()
    target = labels[:, 1:]
    lp = -F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE, reduction="none")
    valid = target != IGNORE
    return -(lp * valid).sum() / valid.sum().clamp(min=1)


def train_dp(model, data: LMDataset, dp: DPConfig, loop: Loop, seed: int) -> Tuple[torch.nn.Module, dict]:
    """Train ``model`` on ``data`` with DP-SGD (AdamW on the clipped, noised gradients); returns (model, privacy)."""
    require_opacus()
    from opacus import PrivacyEngine
    if loop.num_processes > 1:
        raise ObliviateError("DP training runs in one process (Opacus accounts for one Poisson-sampled stream)")
    loop.seed(seed)
    model = loop.place(model).train()
    for p in model.parameters():
        p.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    from ...loop import collate
    loader = torch.utils.data.DataLoader(data, batch_size=dp.batch_size, shuffle=True, generator=generator,
                                         collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=dp.lr, weight_decay=0.0)
    engine = PrivacyEngine(accountant=dp.accountant, secure_mode=False)
    module, optimizer, dp_loader = engine.make_private_with_epsilon(
        module=model, optimizer=optimizer, data_loader=loader, target_epsilon=dp.epsilon, target_delta=dp.delta,
        epochs=dp.epochs, max_grad_norm=dp.max_grad_norm, noise_generator=torch.Generator().manual_seed(seed + 1))
    dp_loader = loop.accelerator.prepare_data_loader(dp_loader)
    module = loop.fit(module, optimizer, dp_loader, lambda m, b: dp_nll(m, *b), dp.epochs, desc="dp-base")
    privacy = {"epsilon": float(engine.get_epsilon(dp.delta)), "delta": dp.delta, "target_epsilon": dp.epsilon,
               "accountant": dp.accountant, "noise_multiplier": float(optimizer.noise_multiplier),
               "max_grad_norm": dp.max_grad_norm, "sample_rate": 1.0 / len(loader),
               "steps": int(sum(n for _, _, n in engine.accountant.history)), "epochs": dp.epochs}
    plain = module._module
    module.remove_hooks() if hasattr(module, "remove_hooks") else None
    for p in plain.parameters():
        p.grad_sample = None
        p.grad = None
    return plain.eval(), privacy


def dp_base(initial, tokenizer, data: LMDataset, dp: DPConfig, loop: Loop, seed: int, key: dict,
            cache: LMCache = None):
    """The DP base model trained from ``initial`` on ``data`` (all the data), cached under ``key`` + the DP
    settings; returns (model, privacy, seconds). The privacy spent is stored as ``privacy.json`` beside it."""
    dp.check()
    require_opacus()
    cache = cache or LMCache()
    key = {**key, "role": "dp-base", "dp": asdict(dp), "seed": seed}
    path = cache.path(key) / "privacy.json"
    spent = {}

    def train():
        model, privacy = train_dp(initial, data, dp, loop, seed)
        spent.update(privacy)
        return model, tokenizer

    model, _, seconds = cache.get_or_train(key, train, loop)
    if spent:
        atomic_write_json(path, spent)
    if not path.is_file():
        raise ObliviateError(f"the cached DP base model {path.parent} has no privacy.json; delete the folder and "
                             f"train it again")
    return model, json.loads(path.read_text()), seconds


__all__ = ["DPConfig", "train_dp", "dp_base", "dp_nll", "require_opacus"]
