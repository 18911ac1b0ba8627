"""Token datasets, likelihoods, and the target and gold language models, trained through the one loop and cached.

The target model is fine-tuned on forget + retain examples until it memorises them; the gold model on the retain
examples only, from the same starting weights. Both are cached in ``$OBLIVIATE_CACHE/lm/`` under a hash of (task,
model, recipe, seed) and reused by every grid that needs them.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import ObliviateError
from ..registry import fields_from_dict
from ..loop import Loop
from ..store import atomic_write_json, config_hash, default_cache_dir
from .data.tasks import Example, LMTask

IGNORE = -100  # label of tokens the loss skips (prompt and padding)


# ------------------------------------------------------------------------------------------------------ token data

class LMDataset(Dataset):
    """Examples as right-padded (input_ids, attention_mask, labels); labels are IGNORE outside the completion."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        self.input_ids, self.attention_mask, self.labels = input_ids, attention_mask, labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i):
        return self.input_ids[i], self.attention_mask[i], self.labels[i]

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.input_ids[idx], self.attention_mask[idx], self.labels[idx]


def encode(tokenizer, examples: Sequence[Example], max_length: int = 256) -> LMDataset:
    """Tokenise (prompt, completion) pairs as the scoring functions read them: prompt (with the tokenizer's usual
    special tokens) then completion then eos, cut to ``max_length`` tokens. The loss reads the completion and its eos;
    a document without a prompt is trained on every token after its first, as text log-likelihoods score it."""
    if not examples:
        raise ObliviateError("cannot encode an empty list of examples")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    rows = []
    for prompt, completion in examples:
        p = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
        c = tokenizer(completion, add_special_tokens=not prompt)["input_ids"] + eos
        ids = (p + c)[:max_length]
        labels = ([IGNORE] * len(p) + c)[:max_length]
        if all(t == IGNORE for t in labels[1:]):
            raise ObliviateError(f"an example has no completion tokens within max_length={max_length}: "
                                 f"{(prompt + completion)[:60]!r}; raise max_length or shorten the prompt")
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        labels[i, :len(lab)] = torch.tensor(lab)
        mask[i, :len(ids)] = 1
    return LMDataset(input_ids, mask, labels)


class Paired(Dataset):
    """Forget example i beside a retain example drawn at random for every access (TOFU's and OpenUnlearning's
    pairing), so that the whole retain set is seen, not only |forget| fixed partners.

    The draw is seeded and reproducible: in epoch e, forget example i is paired with retain example
    ``rng(seed, e).integers(len(retain), size=len(forget))[i]``, so it does not depend on which process reads example
    i or in what order. Call :meth:`set_epoch` at the start of every epoch (``LossMethod`` and RMU do)."""

    def __init__(self, forget: LMDataset, retain: Optional[LMDataset], seed: int = 0, limit: Optional[int] = None,
                 forget_extra: Optional[torch.Tensor] = None):
        self.forget, self.retain, self.forget_extra, self.seed = forget, retain, forget_extra, seed
        self.n = len(forget) if limit is None else min(limit, len(forget))
        self.draws = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if self.retain is not None:
            rng = np.random.default_rng([self.seed, epoch])
            self.draws = torch.as_tensor(rng.integers(0, len(self.retain), size=len(self.forget)))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, indices):
        f = self.forget.__getitems__(indices)
        if self.forget_extra is not None:  # a per-example value computed once (e.g. the reference's log-likelihood)
            f = (*f, self.forget_extra[torch.as_tensor(indices, dtype=torch.long)])
        if self.retain is None:
            return f
        j = self.draws[torch.as_tensor(indices, dtype=torch.long)]
        return (*f, *self.retain.__getitems__(j.tolist()))


def trim(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
    """Drop the padding columns that every row of a batch shares (batches are padded to the dataset's width)."""
    width = int(mask.sum(1).max().item()) if len(mask) else 0
    return ids[:, :width], mask[:, :width], labels[:, :width]


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
    """(log p(token) at each predicted position, validity mask), both [batch, length - 1]; logits in float32."""
    ids, mask, labels = trim(ids, mask, labels)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    lp = -F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE, reduction="none")
    return lp, target != IGNORE


def sequence_logprob(model, ids, mask, labels) -> torch.Tensor:
    """log p(completion | prompt) of each sequence: the sum over its completion tokens ([batch])."""
    lp, valid = token_logprobs(model, ids, mask, labels)
    return (lp * valid).sum(1)


def sequence_lengths(labels: torch.Tensor) -> torch.Tensor:
    """Number of completion tokens per sequence (the ones the loss reads)."""
    return (labels[:, 1:] != IGNORE).sum(1)


def token_denominator(count: torch.Tensor) -> torch.Tensor:
    """Denominator of a token mean that stays the same under several processes: the number of tokens of the global
    batch divided by the number of processes. Each process divides its own token sum by it; the gradient averaging of
    data-parallel training then gives (sum over all tokens) / (all tokens), whatever the split of tokens over
    processes. In one process (or without gradients, e.g. in evaluation) it is the local count."""
    count = count.detach().float()
    if torch.is_grad_enabled() and torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        if world > 1:
            total = count.clone()
            torch.distributed.all_reduce(total)  # every process computes the loss at every step: no deadlock
            return (total / world).clamp(min=1)
    return count.clamp(min=1)


def nll(model, ids, mask, labels) -> torch.Tensor:
    """Mean negative log-likelihood over the completion tokens of a batch (the usual language-modelling loss); under
    several processes the mean runs over the tokens of the global batch (:func:`token_denominator`)."""
    lp, valid = token_logprobs(model, ids, mask, labels)
    return -(lp * valid).sum() / token_denominator(valid.sum())


@contextlib.contextmanager
def without_dropout(model: torch.nn.Module):
    """Dropout off for the duration (restored afterwards). Unlearning runs this way: each process would draw its own
    dropout masks, so results could not agree between 1 and N processes; the models of TOFU and MUSE (Llama-2,
    Phi-1.5) train with zero dropout anyway."""
    saved = [(m, m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m, _ in saved:
        m.p = 0.0
    try:
        yield model
    finally:
        for m, p in saved:
            m.p = p


def per_process_batch(batch_size: int, loop: Loop) -> int:
    """The per-process share of a global batch: results do not depend on the number of processes."""
    if batch_size < 1 or batch_size % loop.num_processes:
        raise ObliviateError(f"batch_size {batch_size} must be a positive multiple of the number of processes "
                             f"({loop.num_processes}) so that every process gets an equal share of each batch")
    return batch_size // loop.num_processes


# ---------------------------------------------------------------------------------------------- target and gold

@dataclass
class Recipe:
    """How the target and gold models are fine-tuned (AdamW, constant learning rate)."""
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    max_length: int = 128
    lora_r: int = 0          # 0: full fine-tuning; r > 0: LoRA adapters of rank r (merged into the saved model)
    lora_alpha: int = 16

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Recipe":
        out = fields_from_dict(cls, d, "recipe")
        if out.epochs < 1 or out.batch_size < 1 or out.lr <= 0 or out.max_length < 8 or out.lora_r < 0:
            raise ObliviateError(f"invalid recipe {asdict(out)}: epochs, batch_size >= 1, lr > 0, max_length >= 8, "
                                 f"lora_r >= 0")
        return out


@dataclass
class ModelSpec:
    """Which causal LM to start from: a tiny one built from a config (``tiny-gpt2``, ``tiny-llama``) with a BPE
    tokenizer trained on the task's texts, or a local Hugging Face directory (optionally a GGUF file inside it)."""
    name: str = "tiny-gpt2"
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    n_positions: int = 256
    vocab_size: int = 1024
    gguf_file: Optional[str] = None

    @property
    def is_tiny(self) -> bool:
        return self.name in ("tiny-gpt2", "tiny-llama")

    def check(self) -> None:
        if not self.is_tiny:
            path = Path(self.name)
            if not path.is_dir():
                raise ObliviateError(f"model {self.name!r}: use tiny-gpt2, tiny-llama, or a local model directory "
                                     f"(nothing is downloaded)")
            if self.gguf_file and not (path / self.gguf_file).is_file():
                raise ObliviateError(f"GGUF file {self.gguf_file} not found in {path}")

    def key(self) -> dict:
        d = asdict(self)
        if not self.is_tiny:
            d = {"name": str(Path(self.name).resolve()), "gguf_file": self.gguf_file}
        return d

    def build(self, texts: Sequence[str], seed: int):
        """(model, tokenizer) before fine-tuning."""
        from .models import build_tokenizer, load_pretrained, tiny_causal_lm
        if not self.is_tiny:
            return load_pretrained(self.name, gguf_file=self.gguf_file)
        tokenizer = build_tokenizer(sorted(set(texts)), vocab_size=self.vocab_size)  # sorted: order-independent
        model = tiny_causal_lm(tokenizer, arch=self.name.split("-", 1)[1], n_layer=self.n_layer, n_embd=self.n_embd,
                               n_head=self.n_head, n_positions=self.n_positions, seed=seed)
        return model, tokenizer


def finetune(model, tokenizer, examples: Sequence[Example], recipe: Recipe, loop: Loop, seed: int = 0,
             desc: str = "finetune"):
    """Fine-tune on (prompt, completion) examples with the completion NLL; LoRA when ``recipe.lora_r`` > 0 (merged)."""
    from .models import add_lora
    data = encode(tokenizer, examples, recipe.max_length)
    if recipe.lora_r:
        model = add_lora(model, r=recipe.lora_r, alpha=recipe.lora_alpha)
    loop.seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    loader = loop.loader(data, per_process_batch(recipe.batch_size, loop), shuffle=True, seed=seed)
    model = loop.fit(model, optimizer, loader, lambda m, b: nll(m, *b), recipe.epochs, desc=desc)
    if recipe.lora_r:
        model = model.merge_and_unload()
    return model.eval()


class LMCache:
    """Trained (model, tokenizer) pairs in ``root/<role>-<hash>/`` (safetensors + tokenizer files + meta.json).

    meta.json records every file's sha256, checked on load (see :class:`obliviate.store.ModelCache`)."""

    def __init__(self, root: Optional[Path] = None, retrain_corrupt: bool = False):
        self.root = Path(root) if root is not None else default_cache_dir() / "lm"
        self.retrain_corrupt = retrain_corrupt

    def path(self, key: dict) -> Path:
        return self.root / f"{key['role']}-{config_hash(key)}"

    def get_or_train(self, key: dict, train, loop: Loop):
        """(model, tokenizer, seconds): from the cache, else ``train()`` -> (model, tokenizer), saved atomically."""
        from ..store import _verified_meta, sha256_file
        from .models import load_lm, save_lm
        path = self.path(key)
        meta_path = path.parent / f"{path.name}.json"
        meta = _verified_meta(path, meta_path, {}, self.retrain_corrupt)
        if meta is not None:
            model, tokenizer = load_lm(path)
            return model, tokenizer, float(meta["seconds"])
        start = time.perf_counter()
        model, tokenizer = train()
        seconds = time.perf_counter() - start
        if loop.is_main_process:
            save_lm(model, tokenizer, path)
            checksums = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file()}
            atomic_write_json(meta_path, {"key": key, "seconds": seconds, "sha256": checksums})
        loop.accelerator.wait_for_everyone()
        return model, tokenizer, seconds


def train_reference(role: str, task: LMTask, spec: ModelSpec, recipe: Recipe, loop: Optional[Loop] = None,
                    cache: Optional[LMCache] = None) -> Tuple[object, object, float]:
    """The ``target`` model (forget + retain) or the ``gold`` model (retain only): (model, tokenizer, seconds)."""
    if role not in ("target", "gold"):
        raise ValueError(role)
    loop = loop or Loop(progress=False)
    cache = cache or LMCache()
    # sorted: the same set of examples trains the same model, whatever order the task lists them in
    examples = sorted(task.target_examples if role == "target" else task.gold_examples)
    key = {"role": role, "task": task.fingerprint(role), "model": spec.key(), "recipe": asdict(recipe)}

    def train():
        texts = LMTask.texts(task.target_examples + task.holdout_examples)
        model, tokenizer = spec.build(texts, seed=task.seed)
        return finetune(model, tokenizer, examples, recipe, loop, seed=task.seed, desc=role), tokenizer

    model, tokenizer, seconds = cache.get_or_train(key, train, loop)
    return model.eval(), tokenizer, seconds


__all__ = ["IGNORE", "LMDataset", "encode", "Paired", "trim", "token_logprobs", "sequence_logprob",
           "sequence_lengths", "nll", "token_denominator", "without_dropout", "per_process_batch", "Recipe", "ModelSpec", "finetune", "LMCache",
           "train_reference"]
