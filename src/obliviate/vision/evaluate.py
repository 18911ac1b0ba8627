"""Evaluate an unlearned classifier against the original and gold models.

The logits of each split are computed once per model (eval mode, no augmentation, large batches) and kept in a
:class:`LogitsCache`; every metric reads them from there.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..loop import Loop
from ..task import SPLITS, Task
from . import metrics as M


class LogitsCache:
    """Logits per (model, split), computed on first use. Keyed by the model object: do not modify a model after
    evaluating it with the same cache."""

    def __init__(self, task: Task, loop: Loop, batch_size: int = 1024):
        self.task, self.loop, self.batch_size = task, loop, batch_size
        self._store: Dict[tuple, torch.Tensor] = {}
        self.passes = 0  # number of samples forwarded (for the evaluation-cost benchmark)

    def logits(self, model: nn.Module, split: str) -> torch.Tensor:
        key = (id(model), split)
        if key not in self._store:
            ds = self.task.split(split)
            self._store[key] = self.loop.predict(model, ds, self.batch_size)
            self.passes += len(ds)
        return self._store[key]

    def probs(self, model: nn.Module, split: str) -> np.ndarray:
        key = (id(model), split, "probs")
        if key not in self._store:
            self._store[key] = M.softmax(self.logits(model, split))
        return self._store[key]

    def forget_model(self, model: nn.Module) -> None:
        for key in [k for k in self._store if k[0] == id(model)]:
            del self._store[key]


def basic_scores(model: nn.Module, task: Task, cache: LogitsCache) -> dict:
    """Accuracies on the four splits and the two membership-inference scores (memoised per model in the cache)."""
    key = (id(model), "scores")
    if key not in cache._store:
        cache._store[key] = _basic_scores(model, task, cache)
    return dict(cache._store[key])


def _basic_scores(model: nn.Module, task: Task, cache: LogitsCache) -> dict:
    y = {s: task.labels(s) for s in SPLITS}
    p = {s: cache.probs(model, s) for s in SPLITS}
    scores = {f"acc_{s}": M.accuracy(p[s], y[s]) for s in SPLITS}
    scores["mia"] = M.mia_entropy(p["retain"], p["test"], p["forget"])
    scores["mia_efficacy"] = M.mia_efficacy(p["retain"], y["retain"], p["test"], y["test"], p["forget"], y["forget"],
                                            seed=task.seed)
    if task.forgotten_classes:
        forgotten = np.isin(y["test"], task.forgotten_classes)
        scores["acc_test_forgotten"] = M.accuracy(p["test"][forgotten], y["test"][forgotten])
        scores["acc_test_kept"] = M.accuracy(p["test"][~forgotten], y["test"][~forgotten])
    return scores


def evaluate(model: nn.Module, task: Task, original: Optional[nn.Module] = None, gold: Optional[nn.Module] = None,
             loop: Optional[Loop] = None, cache: Optional[LogitsCache] = None) -> dict:
    """All metrics of ``model`` on ``task`` as a dict of named floats.

    Always: acc_forget, acc_retain, acc_unseen, acc_test, mia, mia_efficacy. With ``original``: rf_jsd, whose
    reference class means are the original model's on the test split, as in the LoTUS paper and its code
    (``log_js_proxy``); D_u stays free for choosing hyperparameters (``obliviate tune`` computes its own RF-JSD on D_u).
    With ``gold``: jsd and avg_gap.
    """
    loop = loop or Loop(progress=False)
    cache = cache or LogitsCache(task, loop)
    scores = basic_scores(model, task, cache)
    if original is not None:
        scores["rf_jsd"] = M.rf_jsd(cache.probs(model, "forget"), task.labels("forget"),
                                    cache.probs(original, "test"), task.labels("test"))
    if gold is not None:
        gold_scores = basic_scores(gold, task, cache)
        scores["jsd"] = M.jsd(cache.probs(model, "forget"), cache.probs(gold, "forget"))
        scores["avg_gap"] = M.avg_gap(scores, gold_scores)
    return scores
