"""WHP's generic logits at inference time: a model view, no weight changes (how MUSE evaluates WHP)."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ObliviateError
from ..wrapped import WrappedLM, lm_step
from .base import Method, register_method
from .whp import PAPER, generic_logits, reinforced_model


class GenericLogitsLM(WrappedLM):
    """Returns ``v_base - alpha * ReLU(v_reinforced - v_base)`` where a causal LM returns its logits."""

    def __init__(self, model, reinforced, alpha: float):
        super().__init__(model)
        self.reinforced = reinforced
        self.alpha = alpha

    def step(self, ids, mask, position_ids, state, prompt, cache):
        past_base, past_reinforced = state if state is not None else (None, None)
        v_base, past_base = lm_step(self.model, ids, mask, position_ids, past_base, cache)
        v_reinforced, past_reinforced = lm_step(self.reinforced, ids, mask, position_ids, past_reinforced, cache)
        return generic_logits(v_base.float(), v_reinforced.float(), self.alpha), (past_base, past_reinforced)


@register_method
@dataclass
class WHPLogits(Method):
    """WHP's generic logits alone, at inference time (Eldan and Russinovich, "Who's Harry Potter? Approximate
    Unlearning in LLMs", 2023, arXiv 2310.02238; evaluated this way in MUSE, Shi et al. 2024, arXiv 2407.06460).

    Trains (or loads from the cache) WHP's reinforced model -- the target further fine-tuned on the forget text -- and
    returns a view of the target whose logits are ``v_base - alpha * ReLU(v_reinforced - v_base)`` at every position,
    for scoring and for greedy generation alike. No weight of the target changes; inference costs two forward passes.

    Hyperparameters: alpha=5.0 (the top of the 1-5 range used with this formula), reinforce_epochs=3,
    reinforce_lr=1e-5, batch_size=32, weight_decay=0.0 (AdamW, constant learning rate, for the reinforced model).
    The retain set is never read.
    """

    name = "whp-logits"
    paper = PAPER
    summary = "inference-time generic logits from the target and a reinforced model (no weight change)"
    reads_retain = False

    alpha: float = 5.0
    reinforce_epochs: int = 3
    reinforce_lr: float = 1e-5
    batch_size: int = 32
    weight_decay: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.alpha < 0 or self.reinforce_epochs < 1 or self.reinforce_lr <= 0:
            raise ObliviateError(f"{self.name}: alpha must be >= 0, reinforce_epochs >= 1 and reinforce_lr > 0")

    def unlearn(self, model, data, loop):
        reinforced = reinforced_model(model, data, loop, self.reinforce_epochs, self.reinforce_lr, self.batch_size,
                                      self.weight_decay)
        for p in model.parameters():  # the target itself, frozen: it is only read
            p.requires_grad_(False)
        return GenericLogitsLM(loop.place(model).eval(), reinforced, self.alpha)
