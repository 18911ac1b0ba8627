"""DP2Unlearning: fine-tune a differentially private base model on the retain set only."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import torch

from ...errors import ObliviateError
from ..dp.sgd import ACCOUNTANTS, DPConfig, dp_base, require_opacus
from ..train import LMDataset, nll, per_process_batch
from .base import Method, register_method
from .whp import _hash_tensors


def all_data(data) -> LMDataset:
    """Forget + retain examples in one dataset (padded to the wider of the two): what the DP base trains on."""
    f, r = data.forget, data.retain
    width = max(f.input_ids.shape[1], r.input_ids.shape[1])

    def pad(t, value):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    # padding ids are never read: the mask hides them and their labels are IGNORE
    return LMDataset(torch.cat([pad(f.input_ids, 0), pad(r.input_ids, 0)]),
                     torch.cat([pad(f.attention_mask, 0), pad(r.attention_mask, 0)]),
                     torch.cat([pad(f.labels, -100), pad(r.labels, -100)]))


def initial_model(model, seed: int):
    """The untrained model of the same architecture, from the same seed as a tiny target (``tiny_causal_lm``)."""
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return type(base)(config).to(next(model.parameters()).dtype)


@register_method
@dataclass
class DP2U(Method):
    """DP2Unlearning (Al Mahmud et al., "DP2Unlearning: An Efficient and Guaranteed Unlearning Framework for LLMs",
    2025, arXiv 2504.13774).

    An unlearning-ready base model is trained on all the data (forget + retain) with epsilon-differential privacy
    (DP-SGD through Opacus: per-example clipping at ``max_grad_norm``, Gaussian noise whose multiplier the accountant
    sets for (epsilon, delta) over ``dp_epochs``) and stored (cached like the target and gold models, with the privacy
    spent). To unlearn, the stored DP base is fine-tuned on the retain set only, so the forget set's influence on the
    result is bounded by the DP guarantee of the base; the unlearning step never reads a forget example. With
    ``--lora`` the fine-tuning trains LoRA adapters of that rank on the DP base.

    Hyperparameters: epsilon=8.0, delta=1e-5, max_grad_norm=1.0, accountant="rdp" (the paper: clip 1.0, epsilon
    0.1-100), dp_epochs=20, dp_lr=3e-3, dp_batch_size=32 (DP-SGD with AdamW on the noised gradients, from the tiny
    models' initial weights), epochs=3 (the paper: 1-5), lr=1e-3, batch_size=32, weight_decay=0.0 (AdamW, constant
    learning rate). The row's metrics record the privacy spent (``dp_epsilon`` at ``dp_delta``), the DP base's
    training time and the unlearning step's time alone (``dp_unlearn_seconds``, to compare with the gold model's).

    The DP base starts from the untrained model of the target's architecture, seeded as a tiny target's initial
    weights. A pretrained model's starting weights are not part of the target, so with a local pretrained model the
    DP base is trained from that architecture's random initialisation too (a known limitation).
    """

    name = "dp2u"
    paper = ("Al Mahmud et al., DP2Unlearning: An Efficient and Guaranteed Unlearning Framework for LLMs, 2025 "
             "(arXiv 2504.13774)")
    summary = "fine-tune a DP-SGD base model (trained once on all data) on the retain set only"

    epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    dp_epochs: int = 20
    dp_lr: float = 3e-3
    dp_batch_size: int = 32
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.accountant not in ACCOUNTANTS:
            raise ObliviateError(f"dp2u: accountant must be one of {', '.join(ACCOUNTANTS)}")
        self.dp_config().check()

    def dp_config(self) -> DPConfig:
        return DPConfig(self.epsilon, self.delta, self.max_grad_norm, self.accountant, self.dp_epochs, self.dp_lr,
                        self.dp_batch_size)

    def base(self, model, data, loop):
        """(DP base model, privacy spent, seconds its training took when it was trained)."""
        config = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
        everything = all_data(data)
        key = {"config": hashlib.sha256(config.to_json_string().encode()).hexdigest()[:24],
               "data": _hash_tensors([everything.input_ids, everything.attention_mask, everything.labels])}
        return dp_base(initial_model(model, data.seed), data.tokenizer, everything, self.dp_config(), loop,
                       data.seed, key)

    def unlearn(self, model, data, loop):
        require_opacus()
        base, privacy, base_seconds = self.base(model, data, loop)
        if hasattr(model, "peft_config"):  # LoRA: adapters of the same rank, on the DP base
            from ..models import add_lora
            cfg = next(iter(model.peft_config.values()))
            base = add_lora(base, r=cfg.r, alpha=cfg.lora_alpha)
        start = time.perf_counter()
        base = loop.place(base).train()
        loop.seed(data.seed)
        loader = loop.loader(data.retain, per_process_batch(self.batch_size, loop), shuffle=True, seed=data.seed)
        optimizer = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=self.lr,
                                      weight_decay=self.weight_decay)

        def before_epoch(epoch):
            if epoch > 0 and data.on_epoch is not None:
                data.on_epoch(epoch, base)

        base = loop.fit(base, optimizer, loader, lambda m, b: nll(m, *b), self.epochs, desc=self.name,
                        before_epoch=before_epoch)
        seconds = time.perf_counter() - start
        if data.on_epoch is not None:
            data.on_epoch(self.epochs, base)
        report = {"dp_epsilon": privacy["epsilon"], "dp_delta": privacy["delta"],
                  "dp_noise_multiplier": privacy["noise_multiplier"], "dp_base_seconds": base_seconds,
                  "dp_unlearn_seconds": seconds}
        # the evaluator records what a method reports about itself; LoRA adapters are merged into the inner model
        inner = base.get_base_model() if hasattr(base, "get_base_model") else base
        inner.extra_metrics = lambda evaluator, tokenizer: dict(report)
        return base
