"""One domain-unlearning run: load (or pre-train, cached) the CLIP model, unlearn on the few-shot task, evaluate.

The backbone is frozen and shared: a method wraps it in prompts and never changes its weights."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Optional

from ..errors import ObliviateError
from ..loop import Loop
from .data import MNIST_DOMAINS, DomainTask
from .evaluate import evaluate, zero_shot
from .methods import create
from .models import ClipModel, PretrainRecipe, TinyClipConfig, load_clip, pretrained_tiny_clip

TINY = "tiny-clip"


def check_model(model: str) -> dict:
    """Check a --model value before any work; returns what identifies it (for run ids)."""
    if model == TINY:
        import dataclasses
        return {"name": TINY, "config": dataclasses.asdict(TinyClipConfig()),
                "recipe": dataclasses.asdict(PretrainRecipe())}
    path = Path(model)
    if not path.is_dir():
        raise ObliviateError(f"--model {model!r}: use {TINY} or a local folder with a Hugging Face CLIPModel "
                             f"(config.json, model.safetensors, tokenizer files); nothing is downloaded")
    files = sorted(p for p in path.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.name}:{p.stat().st_size}".encode())
        if p.suffix == ".json":
            digest.update(p.read_bytes())
    return {"name": str(path.resolve()), "files": digest.hexdigest()[:16]}


def load_model(model: str, loop: Loop) -> tuple[ClipModel, float]:
    """(the frozen CLIP, seconds spent training it: the cached pre-training time for the tiny CLIP, 0 for a folder)."""
    check_model(model)
    if model == TINY:
        clip, seconds, _ = pretrained_tiny_clip(loop, TinyClipConfig(), PretrainRecipe(), MNIST_DOMAINS)
        return clip, seconds
    return load_clip(model), 0.0


def reference_payload(clip: ClipModel, task: DomainTask, loop: Loop, seconds: float = 0.0):
    """The original (zero-shot) model's row payload, and its test features."""
    metrics, features = evaluate(zero_shot(clip, task), task, loop)
    return {"metrics": {**metrics, "seconds": seconds}, "seconds": seconds}, features


def method_payload(name: str, hyperparameters: dict, clip: ClipModel, task: DomainTask, loop: Loop):
    """One method's row payload (metrics, params, seconds), and its test features. Raises on failure."""
    method = create(name, **hyperparameters)
    method.check_task(task)
    start = time.perf_counter()
    model = method.unlearn(clip, task, loop)
    seconds = time.perf_counter() - start
    metrics, features = evaluate(model, task, loop)
    return {"metrics": {**metrics, "seconds": seconds}, "seconds": seconds, "params": method.params()}, features


def unlearn_row(method: str, hyperparameters: dict, task: DomainTask, model: str = TINY,
                loop: Optional[Loop] = None, figure: Optional[Path] = None) -> dict:
    """A complete result row for one run (reference and method evaluated; ``figure``: write the PCA figure there)."""
    from ..rows import base_row
    from .figures import pca_by_domain
    loop = loop or Loop(progress=False)
    create(method, **hyperparameters).check_task(task)  # bad input fails before any training
    clip, _ = load_model(model, loop)
    original, before = reference_payload(clip, task, loop)
    payload, after = method_payload(method, hyperparameters, clip, task, loop)
    context = {"family": "vlm", "dataset": task.dataset, "model": Path(model).name, "forget": str(task.forget),
               "seed": task.seed}
    row = base_row(context, method=method, params=payload["params"])
    row.update(status="ok", metrics=payload["metrics"], seconds=payload["seconds"],
               original=original["metrics"], task=task.identity())
    if figure is not None:
        from ..store import atomic_write_bytes
        atomic_write_bytes(figure, pca_by_domain(before, after, task.test.domains.numpy(), task.domain_names,
                                                 task.forget_domains, f"{method} on {task.dataset}, {task.forget}"))
    return row
