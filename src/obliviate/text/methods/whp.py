"""Who's Harry Potter: fine-tune the target toward the predictions of a model that never learnt the forget text."""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ...errors import ObliviateError
from ..anchors.dictionary import AnchorMap, load_anchors
from ..eval.scoring import max_positions
from ..train import IGNORE, LMCache, LMDataset, nll, per_process_batch
from .base import Method, frozen_copy, register_method

PAPER = "Eldan and Russinovich, Who's Harry Potter? Approximate Unlearning in LLMs, 2023 (arXiv 2310.02238)"


def generic_logits(base: torch.Tensor, reinforced: torch.Tensor, alpha: float) -> torch.Tensor:
    """v_generic = v_base - alpha * ReLU(v_reinforced - v_base): tokens the reinforced model boosts are pushed down."""
    return base - alpha * F.relu(reinforced - base)


# ------------------------------------------------------------------------------------------- reinforced model

def _hash_tensors(tensors, h=None) -> str:
    h = h or hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def model_fingerprint(model) -> str:
    """A hash of a model's weights (names, dtypes, bytes): what a model trained from it depends on."""
    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        h.update(name.encode())
    return _hash_tensors([state[k] for k in sorted(state)], h)


def plain(model):
    """The model without LoRA adapters (merged into a copy), for training and caching a helper model."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return copy.deepcopy(model)


def reinforced_model(model, data, loop, epochs: int, lr: float, batch_size: int, weight_decay: float = 0.0):
    """WHP's reinforced model: ``model`` further fine-tuned on the forget set (completion NLL, AdamW, constant lr).

    Cached in the language-model cache (like the target and gold models) under the hash of the starting weights, the
    forget set's tokens, the training settings and the seed; returned frozen and placed on the loop's device."""
    start = plain(model)
    key = {"role": "whp-reinforced", "start": model_fingerprint(start),
           "forget": _hash_tensors([data.forget.input_ids, data.forget.attention_mask, data.forget.labels]),
           "epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay, "seed": data.seed}

    def train():
        tuned = start.train()
        for p in tuned.parameters():
            p.requires_grad_(True)
        loop.seed(data.seed)
        loader = loop.loader(data.forget, per_process_batch(batch_size, loop), shuffle=True, seed=data.seed)
        optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr, weight_decay=weight_decay)
        tuned = loop.fit(tuned, optimizer, loader, lambda m, b: nll(m, *b), epochs, desc="whp-reinforce")
        return tuned.eval(), data.tokenizer

    reinforced, _, _ = LMCache().get_or_train(key, train, loop)
    return frozen_copy(reinforced.to(next(model.parameters()).dtype), loop)


# ------------------------------------------------------------------------------------------- generic targets

class Translated(torch.utils.data.Dataset):
    """Forget examples beside their anchored translation: (ids, mask, labels, translated ids, translated mask, gather).

    ``gather[i, j]`` is the position of the translated sequence whose logits predict original token j (-1 where
    token j is not trained: prompt, padding, the later tokens of an anchored term, or past the model's positions)."""

    def __init__(self, forget: LMDataset, anchors: Optional[AnchorMap], pad_id: int, limit: Optional[int]):
        self.forget = forget
        rows = []
        for ids, mask, labels in zip(forget.input_ids, forget.attention_mask, forget.labels):
            n = int(mask.sum())
            original = ids[:n].tolist()
            t_ids, where = anchors.translate(original) if anchors else (original, list(range(n)))
            if limit is not None:
                t_ids = t_ids[:limit]
            gather = [-1] * len(ids)
            for j in range(1, n):
                k = where[j]
                if labels[j] != IGNORE and k is not None and 1 <= k <= len(t_ids):
                    gather[j] = k - 1  # the logits at position k - 1 predict the translated token k
            rows.append((t_ids, gather))
        width = max(len(t) for t, _ in rows)
        self.t_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        self.t_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (t, _) in enumerate(rows):
            self.t_ids[i, :len(t)] = torch.tensor(t)
            self.t_mask[i, :len(t)] = 1
        self.gather = torch.tensor([g for _, g in rows], dtype=torch.long)

    def __len__(self):
        return len(self.forget)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return (*self.forget.__getitems__(indices), self.t_ids[idx], self.t_mask[idx], self.gather[idx])


@torch.no_grad()
def generic_predictions(base, reinforced, t_ids, t_mask, gather, alpha: float) -> torch.Tensor:
    """Generic logits at each original position ([batch, length, vocab]; rows where gather is -1 are arbitrary)."""
    width = int(t_mask.sum(1).max())
    t_ids, t_mask = t_ids[:, :width], t_mask[:, :width]
    v_base = base(input_ids=t_ids, attention_mask=t_mask).logits.float()
    v_reinforced = reinforced(input_ids=t_ids, attention_mask=t_mask).logits.float()
    generic = generic_logits(v_base, v_reinforced, alpha)
    index = gather.clamp(min=0)[..., None].expand(-1, -1, generic.shape[-1])
    return generic.gather(1, index)


def generic_labels(base, reinforced, data: Translated, loop, batch_size: int, alpha: float) -> LMDataset:
    """The forget set relabelled with the argmax of the generic logits (the paper's hard labels)."""
    labels = torch.full_like(data.forget.labels, IGNORE)
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        _, _, _, t_ids, t_mask, gather = data.__getitems__(idx)
        device = loop.device
        generic = generic_predictions(base, reinforced, t_ids.to(device), t_mask.to(device), gather.to(device), alpha)
        best = generic.argmax(-1).cpu()
        labels[idx] = torch.where(gather >= 0, best, torch.full_like(best, IGNORE))
    return LMDataset(data.forget.input_ids, data.forget.attention_mask, labels)


def soft_label_loss(model, batch, base, reinforced, alpha: float) -> torch.Tensor:
    """Cross-entropy against softmax(v_generic), mean over the trained positions."""
    ids, mask, _, t_ids, t_mask, gather = batch
    width = int(mask.sum(1).max())
    ids, mask, gather = ids[:, :width], mask[:, :width], gather[:, :width]
    target = torch.softmax(generic_predictions(base, reinforced, t_ids, t_mask, gather, alpha)[:, 1:], -1)
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    valid = (gather[:, 1:] >= 0).float()
    return -((target * logp).sum(-1) * valid).sum() / valid.sum().clamp(min=1)


@register_method
@dataclass
class WHP(Method):
    """Who's Harry Potter (Eldan and Russinovich, "Who's Harry Potter? Approximate Unlearning in LLMs", 2023,
    arXiv 2310.02238).

    1. Reinforced model: the target further fine-tuned on the forget text (cached like the target and gold models).
    2. Generic predictions on the forget text: ``v_generic = v_base - alpha * ReLU(v_reinforced - v_base)`` at every
       position, with v_base the target's logits. With an anchored-terms dictionary (``anchors``, a JSON file
       {term: generic term}, e.g. from ``obliviate lm anchors``), both models read the translated text and each
       original token takes the prediction made at its place in the translation (the later tokens of a term, which
       have no counterpart, are not trained). ``anchors="auto"`` builds the dictionary from the task as
       ``obliviate lm anchors`` does (the offline tasks' presets use it).
    3. Fine-tune the target on the forget text toward the generic predictions: their argmax as labels (the paper), or
       their softmax as soft labels (``soft_labels``).

    Hyperparameters: alpha=5.0 (the top of the 1-5 range used with this formula), anchors="" (no dictionary),
    soft_labels=False, epochs=5, lr=1e-5, batch_size=32, weight_decay=0.0 (AdamW, constant learning rate; the
    common language-model unlearning setting), reinforce_epochs=3, reinforce_lr=1e-5.
    The retain set is never read.
    """

    name = "whp"
    paper = PAPER
    summary = "fine-tune toward generic predictions: base logits minus the reinforced model's boost"
    reads_retain = False

    alpha: float = 5.0
    anchors: str = ""
    soft_labels: bool = False
    epochs: int = 5
    lr: float = 1e-5
    batch_size: int = 32
    weight_decay: float = 0.0
    reinforce_epochs: int = 3
    reinforce_lr: float = 1e-5

    def __post_init__(self):
        super().__post_init__()
        if self.alpha < 0:
            raise ObliviateError(f"{self.name}: alpha must be >= 0")
        if self.reinforce_epochs < 1 or self.reinforce_lr <= 0:
            raise ObliviateError(f"{self.name}: reinforce_epochs must be >= 1 and reinforce_lr > 0")
        if self.anchors and self.anchors != "auto":
            load_anchors(self.anchors)  # a missing or malformed file fails before any work

    def anchor_terms(self, data) -> dict:
        if self.anchors != "auto":
            return load_anchors(self.anchors)
        if data.anchor_terms is None:
            raise ObliviateError(f"{self.name}: anchors='auto' needs a task to build the dictionary from; pass a "
                                 "file made by `obliviate lm anchors` instead")
        return data.anchor_terms()

    def generic_view(self, model, data, loop):
        """(frozen base, frozen reinforced model, forget set beside its anchored translation)."""
        tokenizer = data.tokenizer
        anchors = AnchorMap(self.anchor_terms(data), tokenizer) if self.anchors else None
        reinforced = reinforced_model(model, data, loop, self.reinforce_epochs, self.reinforce_lr, self.batch_size,
                                      self.weight_decay)
        base = frozen_copy(model, loop)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return base, reinforced, Translated(data.forget, anchors, pad or 0, max_positions(model))

    def unlearn(self, model, data, loop):
        base, reinforced, translated = self.generic_view(model, data, loop)
        batch = per_process_batch(self.batch_size, loop)
        if self.soft_labels:
            dataset = translated
            loss_fn = lambda m, b: soft_label_loss(m, b, base, reinforced, self.alpha)  # noqa: E731
        else:
            dataset = generic_labels(base, reinforced, translated, loop, batch, self.alpha)
            loss_fn = lambda m, b: nll(m, *b)  # noqa: E731
        loader = loop.loader(dataset, batch, shuffle=True, seed=data.seed)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.lr,
                                      weight_decay=self.weight_decay)

        def before_epoch(epoch):
            if epoch > 0 and data.on_epoch is not None:
                data.on_epoch(epoch, model)

        model = loop.fit(model, optimizer, loader, loss_fn, self.epochs, desc=self.name, before_epoch=before_epoch)
        if data.on_epoch is not None:
            data.on_epoch(self.epochs, model)
        return model
