"""One unlearning run on a classifier: copy the original, unlearn, time it, evaluate, return a result row."""
from __future__ import annotations

import copy
import io
import time
from pathlib import Path
from typing import Optional

import numpy as np
from torch import nn

from ..loop import Loop
from ..store import atomic_write_bytes
from ..task import Task
from .evaluate import LogitsCache, evaluate
from .metrics import entropy
from .methods import Method, create
from .models import check_output_width


def unlearn(method: Method, original: nn.Module, task: Task, loop: Optional[Loop] = None):
    """Run ``method`` on a copy of ``original``; returns (unlearned model, info with seconds and sample passes).

    The original is never modified, also when the method fails (e.g. a NaN loss)."""
    loop = loop or Loop(progress=False)
    check_output_width(original, task)
    model = copy.deepcopy(original)
    model.train()
    loop.seed(task.seed)
    before = loop.samples_trained
    start = time.perf_counter()
    model = method.unlearn(model, task if method.uses_labels else task.without_labels(), loop)
    seconds = time.perf_counter() - start
    model.eval()
    samples = loop.samples_trained - before
    return model, {"seconds": seconds, "samples_trained": samples,
                   "epochs_equiv": samples / max(1, len(task.train_labels))}


RETAIN_SAMPLE = 5000  # retain samples whose MIA feature is kept in the outputs file


def save_outputs(path: Path, model: nn.Module, task: Task, cache: LogitsCache) -> Path:
    """Per-sample outputs that reports need beyond a row's means, as a compressed .npz: forget-set indices, labels and
    logits (the unlearning-challenge confidences), and the MIA feature (softmax entropy) on forget, test and a seeded
    retain subset."""
    rng = np.random.default_rng(task.seed)
    keep = np.sort(rng.choice(len(task.retain_idx), size=min(len(task.retain_idx), RETAIN_SAMPLE), replace=False))
    feature = {s: entropy(cache.probs(model, s)).astype(np.float32) for s in ("forget", "retain", "test")}
    buf = io.BytesIO()
    np.savez_compressed(buf, forget_idx=task.forget_idx, forget_labels=task.labels("forget"),
                        forget_logits=cache.logits(model, "forget").detach().float().cpu().numpy(),
                        entropy_forget=feature["forget"], entropy_retain=feature["retain"][keep],
                        entropy_test=feature["test"])
    return atomic_write_bytes(path, buf.getvalue())


def run_method(name: str, hyperparameters: dict, original: nn.Module, gold: Optional[nn.Module], task: Task,
               loop: Loop, cache: LogitsCache, outputs: Optional[Path] = None) -> dict:
    """One method's row payload: its resolved hyperparameters, scores, time and sample passes (raises on failure).
    With ``outputs``, the per-sample outputs of the unlearned model are saved there (see :func:`save_outputs`)."""
    method = create(name, **hyperparameters)
    model, info = unlearn(method, original, task, loop)
    payload = {"params": method.params(), **info}
    payload["metrics"] = evaluate(model, task, original=original, gold=gold, loop=loop, cache=cache)
    payload["metrics"]["seconds"] = info["seconds"]
    if outputs is not None:
        save_outputs(outputs, model, task, cache)
    cache.forget_model(model)
    return payload


def reference_payload(model: nn.Module, seconds: float, original: nn.Module, gold: Optional[nn.Module], task: Task,
                      loop: Loop, cache: LogitsCache, outputs: Optional[Path] = None) -> dict:
    """The row payload of the original or the gold model itself (the gold model's row is the target every method aims
    at). With ``outputs``, the model's per-sample outputs are saved there (see :func:`save_outputs`)."""
    metrics = evaluate(model, task, original=original, gold=gold, loop=loop, cache=cache)
    if outputs is not None:
        save_outputs(outputs, model, task, cache)
    metrics["seconds"] = seconds
    return {"metrics": metrics, "seconds": seconds}
