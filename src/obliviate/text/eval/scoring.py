"""Forward passes of a causal LM for evaluation: token log-probabilities, Min-K%++ statistics, greedy generation.

All functions run in eval mode under ``torch.no_grad()``, in batches, and return plain numpy arrays and strings.
Scoring pads on the right (causal attention never looks ahead, so padding cannot change a real token's log-prob and
default position ids stay correct); generation pads on the left with position ids taken from the attention mask.
Sequences are sorted by length before batching to keep padding small; results come back in input order.
Pass ``loop`` to run on its device (the model is placed there with ``loop.place``); otherwise the model's device
is used.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, NamedTuple, Optional, Sequence

import numpy as np
import torch

from ...errors import ObliviateError


class AnswerScores(NamedTuple):
    """Teacher-forced scores of one answer given its prompt, one entry per answer token."""
    logprobs: np.ndarray     # log p(y_t | x, y_<t)
    predictions: np.ndarray  # argmax_v p(v | x, y_<t): the model's greedy next token at each answer position
    labels: np.ndarray       # y_t, the answer's token ids


class TokenStats(NamedTuple):
    """Per-token statistics of a text (every token after the first), as Min-K%++ needs them."""
    logprobs: np.ndarray  # log p(x_t | x_<t)
    mu: np.ndarray        # E_{v ~ p(.|x_<t)} [log p(v | x_<t)]
    sigma: np.ndarray     # standard deviation of log p(v | x_<t) under v ~ p(.|x_<t)


# ---------------------------------------------------------------- helpers

@contextlib.contextmanager
def _evaluating(model, loop=None) -> Iterator[torch.device]:
    """Eval mode and no_grad for the duration; the model's training flag is restored afterwards."""
    if loop is not None:
        loop.place(model)
        device = loop.device
    else:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield device
    finally:
        model.train(was_training)


def max_positions(model) -> Optional[int]:
    """The longest sequence the model's position embeddings allow, or None when the config does not say."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ObliviateError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    return pad


def _encode(tokenizer, texts: Sequence[str], special: bool) -> List[List[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=special)["input_ids"]]


def _check_texts(name: str, texts) -> None:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ObliviateError(f"{name} must be a list of strings")


def _batches(lengths: Sequence[int], batch_size: int) -> Iterator[List[int]]:
    """Index batches, longest sequences first, so that each batch holds similar lengths."""
    if batch_size < 1:
        raise ObliviateError(f"batch_size must be at least 1, not {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _right_padded(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, :len(s)] = 1
    return ids.to(device), mask.to(device)


def _logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=mask).logits


def _row_logprobs(logits: torch.Tensor, row: int, span: slice) -> torch.Tensor:
    """log p(. | prefix) in float32 at the positions ``span`` of one row; one row at a time keeps memory at
    (positions x vocab) even for large vocabularies."""
    return torch.log_softmax(logits[row, span].float(), dim=-1)


# ---------------------------------------------------------------- answers given prompts

def _qa_ids(tokenizer, prompts: Sequence[str], answers: Sequence[str], limit: Optional[int]):
    """Prompt ids (with the tokenizer's usual special tokens) + answer ids (none), tokenised separately so that an
    answer's tokens do not depend on its prompt. An empty prompt becomes the bos (else eos) token, so the first answer
    token is scored too. Over-long prompts lose their beginning."""
    _check_texts("prompts", prompts)
    _check_texts("answers", answers)
    if len(prompts) != len(answers):
        raise ObliviateError(f"got {len(prompts)} prompts but {len(answers)} answers")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out = []
    for i, (p, a) in enumerate(zip(_encode(tokenizer, prompts, True), _encode(tokenizer, answers, False))):
        if not a:
            raise ObliviateError(f"answer {i} is empty: nothing to score")
        if not p:
            if start is None:
                raise ObliviateError(f"prompt {i} is empty and the tokenizer has no bos or eos token to start from")
            p = [start]
        if limit is not None and len(a) >= limit:
            raise ObliviateError(f"answer {i} has {len(a)} tokens; the model takes at most {limit} positions")
        if limit is not None and len(p) + len(a) > limit:
            p = p[len(p) + len(a) - limit:]
        out.append((p, a))
    return out


def answer_scores(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16,
                  loop=None) -> List[AnswerScores]:
    """Teacher-forced log-probs, greedy predictions and labels of each answer's tokens given its prompt."""
    pairs = _qa_ids(tokenizer, prompts, answers, max_positions(model))
    pad = _pad_id(tokenizer)
    out: List[Optional[AnswerScores]] = [None] * len(pairs)
    with _evaluating(model, loop) as device:
        for idx in _batches([len(p) + len(a) for p, a in pairs], batch_size):
            seqs = [pairs[i][0] + pairs[i][1] for i in idx]
            ids, mask = _right_padded(seqs, pad, device)
            logits = _logits(model, ids, mask)
            for row, i in enumerate(idx):
                p, a = pairs[i]
                # the logits at position t predict token t + 1: the answer's tokens from position len(p) - 1 on
                logp = _row_logprobs(logits, row, slice(len(p) - 1, len(p) - 1 + len(a)))
                labels = torch.tensor(a, device=logp.device)
                token_lp = logp.gather(-1, labels[:, None])[:, 0]
                out[i] = AnswerScores(token_lp.cpu().double().numpy(), logp.argmax(-1).cpu().numpy(),
                                      np.asarray(a, dtype=np.int64))
    return out


def answer_token_stats(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16,
                       loop=None) -> List[TokenStats]:
    """Like :func:`text_token_stats`, for each answer's tokens given its prompt (membership scores of QA data read the
    answer in the context of its question, as OpenUnlearning does)."""
    pairs = _qa_ids(tokenizer, prompts, answers, max_positions(model))
    pad = _pad_id(tokenizer)
    out: list = [None] * len(pairs)
    with _evaluating(model, loop) as device:
        for idx in _batches([len(p) + len(a) for p, a in pairs], batch_size):
            ids, mask = _right_padded([pairs[i][0] + pairs[i][1] for i in idx], pad, device)
            logits = _logits(model, ids, mask)
            for row, i in enumerate(idx):
                p, a = pairs[i]
                logp = _row_logprobs(logits, row, slice(len(p) - 1, len(p) - 1 + len(a)))
                out[i] = _stats(logp, torch.tensor(a, device=logp.device))
    return out


def _stats(logp: torch.Tensor, labels: torch.Tensor) -> TokenStats:
    """Log-prob of each label and the moments of log p(v) under v ~ p (Min-K%++, Zhang et al. 2024)."""
    token_lp = logp.gather(-1, labels[:, None])[:, 0]
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = (p * (logp - mu[:, None]).square()).sum(-1).sqrt()
    return TokenStats(token_lp.cpu().double().numpy(), mu.cpu().double().numpy(), sigma.cpu().double().numpy())


def answer_logprobs(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16,
                    loop=None) -> List[np.ndarray]:
    """Per-token log-probs log p(y_t | x, y_<t) of each answer's tokens given its prompt."""
    return [s.logprobs for s in answer_scores(model, tokenizer, prompts, answers, batch_size, loop=loop)]


# ---------------------------------------------------------------- whole texts

def _text_ids(tokenizer, texts: Sequence[str], max_length: Optional[int], model) -> List[List[int]]:
    _check_texts("texts", texts)
    limit = max_length if max_length is not None else max_positions(model)
    if limit is not None and limit < 2:
        raise ObliviateError(f"max_length must be at least 2, not {limit}")
    seqs = []
    for i, ids in enumerate(_encode(tokenizer, texts, True)):
        ids = ids[:limit] if limit is not None else ids
        if len(ids) < 2:
            raise ObliviateError(f"text {i} ({texts[i][:40]!r}) has fewer than two tokens: nothing to score")
        seqs.append(ids)
    return seqs


def _text_scores(model, tokenizer, texts, batch_size, max_length, loop, stats: bool):
    seqs = _text_ids(tokenizer, texts, max_length, model)
    pad = _pad_id(tokenizer)
    out: list = [None] * len(seqs)
    with _evaluating(model, loop) as device:
        for idx in _batches([len(s) for s in seqs], batch_size):
            ids, mask = _right_padded([seqs[i] for i in idx], pad, device)
            logits = _logits(model, ids, mask)
            for row, i in enumerate(idx):
                n = len(seqs[i]) - 1
                logp = _row_logprobs(logits, row, slice(0, n))
                if not stats:
                    out[i] = logp.gather(-1, ids[row, 1:n + 1, None])[:, 0].cpu().double().numpy()
                else:
                    out[i] = _stats(logp, ids[row, 1:n + 1])
    return out


def text_logprobs(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: Optional[int] = None,
                  loop=None) -> List[np.ndarray]:
    """log p(x_t | x_<t) for every token of each text after the first (texts are cut to ``max_length`` tokens,
    by default the model's position limit)."""
    return _text_scores(model, tokenizer, texts, batch_size, max_length, loop, stats=False)


def text_token_stats(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: Optional[int] = None,
                     loop=None) -> List[TokenStats]:
    """Like :func:`text_logprobs`, plus the mean and standard deviation of the log-prob under the model's full
    next-token distribution at each position (what Min-K%++ needs)."""
    return _text_scores(model, tokenizer, texts, batch_size, max_length, loop, stats=True)


# ---------------------------------------------------------------- generation

def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 16,
                    stop: Optional[str] = None, loop=None) -> List[str]:
    """Greedy continuation of each prompt (the new text only, special tokens dropped), cut before the first ``stop``
    when given. Generation ends at the eos token or after ``max_new_tokens``. Prompts longer than the model's position
    limit minus ``max_new_tokens`` keep their last tokens."""
    from transformers import GenerationConfig

    _check_texts("prompts", prompts)
    if max_new_tokens < 1:
        raise ObliviateError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
    limit = max_positions(model)
    if limit is not None and max_new_tokens >= limit:
        raise ObliviateError(f"max_new_tokens ({max_new_tokens}) must be below the model's {limit} positions")
    pad = _pad_id(tokenizer)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    seqs = []
    for ids in _encode(tokenizer, prompts, True):
        ids = ids or [start]
        seqs.append(ids[-(limit - max_new_tokens):] if limit is not None else ids)
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, pad_token_id=pad,
                              eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    out: List[Optional[str]] = [None] * len(seqs)
    with _evaluating(model, loop) as device:
        for idx in _batches([len(s) for s in seqs], batch_size):
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(seqs[i]):] = torch.tensor(seqs[i])
                mask[row, width - len(seqs[i]):] = 1
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                       generation_config=config)
            for row, i in enumerate(idx):
                text = tokenizer.decode(generated[row, width:].tolist(), skip_special_tokens=True)
                out[i] = text.split(stop)[0] if stop else text
    return out
