"""Inference-time views of a causal LM: the weights stay as they are; what changes is the logits (WHP's generic
logits) or the input embeddings (ECO's corrupted prompts).

A view is an ``nn.Module`` that the evaluation code calls exactly like a Hugging Face causal LM:
``view(input_ids=, attention_mask=).logits`` for scoring and ``view.generate(input_ids=, attention_mask=,
generation_config=)`` for greedy decoding. Subclasses implement :meth:`WrappedLM.step`, one forward pass that may reuse
key-value caches; the prompt pass (``prompt=True``) and the decoding passes (one new token each) are told apart, so a
view can treat the prompt differently from the tokens it generates.
"""
from __future__ import annotations

import inspect
from typing import Any, Tuple

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids from an attention mask (left padding shifts them, as Hugging Face's generation does)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _cache_argument(model) -> str:
    """The keyword of the key-value cache: ``cache`` in recent transformers, ``past_key_values`` before."""
    forward = getattr(model, "forward")
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def lm_step(model, ids, mask, position_ids, past, cache: bool):
    """One forward pass of a plain causal LM: (logits, key-value cache or None)."""
    extra = {_cache_argument(model): past} if past is not None else {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=cache, **extra)
    if not cache:
        return out.logits, None
    return out.logits, (out.get("cache") or out.get("past_key_values"))


class WrappedLM(torch.nn.Module):
    """A causal LM seen through an inference-time change. ``model`` is held, never modified."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @property
    def config(self):
        return self.model.config

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def step(self, ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor, state: Any, prompt: bool,
             cache: bool) -> Tuple[torch.Tensor, Any]:
        """Logits of one forward pass and the state to pass to the next one (caches). The base view is the model."""
        return lm_step(self.model, ids, mask, position_ids, state, cache)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, **unused) -> CausalLMOutputWithPast:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        logits, _ = self.step(input_ids, mask, positions(mask), None, prompt=True, cache=False)
        return CausalLMOutputWithPast(logits=logits)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask=None, generation_config=None, **unused) -> torch.Tensor:
        """Greedy decoding as Hugging Face's ``generate`` does it (finished rows continue with the pad token; stops
        when every row has emitted eos or after ``max_new_tokens``); returns prompt + new tokens."""
        cfg = generation_config
        max_new = cfg.max_new_tokens
        eos = cfg.eos_token_id
        eos = set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else (min(eos) if eos else 0)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        logits, state = self.step(input_ids, mask, positions(mask), None, prompt=True, cache=True)
        unfinished = torch.ones(len(input_ids), dtype=torch.bool, device=input_ids.device)
        out = [input_ids]
        for t in range(max_new):
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad))
            out.append(nxt[:, None])
            for e in eos:
                unfinished &= nxt != e
            if t == max_new - 1 or not unfinished.any():
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            pos = mask.long().sum(-1, keepdim=True) - 1
            logits, state = self.step(nxt[:, None], mask, pos, state, prompt=False, cache=True)
        return torch.cat(out, 1)


__all__ = ["WrappedLM", "positions", "lm_step"]
