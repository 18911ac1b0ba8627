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


def load_model(model: str, loop: Loop, retrain_corrupt: bool = False) -> tuple[ClipModel, float]:
    """(the frozen CLIP, seconds spent training it: the cached pre-training time for the tiny CLIP, 0 for a folder)."""
    check_model(model)
    if model == TINY:
        from ..store import ModelCache
        clip, seconds, _ = pretrained_tiny_clip(loop, TinyClipConfig(), PretrainRecipe(), MNIST_DOMAINS,
                                                cache=ModelCache(retrain_corrupt=retrain_corrupt))
        return clip, seconds
    return load_clip(model), 0.0


FEATURE_SAMPLE = 2000  # test images whose features are kept for the feature figure


def save_features(path: Optional[Path], features, task: DomainTask) -> None:
    """A seeded subsample of the test features (float16) with their domains, as a compressed .npz."""
    if path is None:
        return
    import io
    import numpy as np
    from ..store import atomic_write_bytes
    rng = np.random.default_rng(0)  # the same images for every model of a cell
    keep = np.sort(rng.choice(len(features), size=min(len(features), FEATURE_SAMPLE), replace=False))
    buf = io.BytesIO()
    np.savez_compressed(buf, features=features[keep].astype(np.float16), domains=task.test.domains.numpy()[keep],
                        labels=task.test.labels.numpy()[keep])
    atomic_write_bytes(path, buf.getvalue())


def reference_payload(clip: ClipModel, task: DomainTask, loop: Loop, seconds: float = 0.0,
                      features_path: Optional[Path] = None) -> dict:
    """The original (zero-shot) model's row payload; its test features go to ``features_path``."""
    metrics, features = evaluate(zero_shot(clip, task), task, loop)
    save_features(features_path, features, task)
    return {"metrics": {**metrics, "seconds": seconds}, "seconds": seconds}


def method_payload(name: str, hyperparameters: dict, clip: ClipModel, task: DomainTask, loop: Loop,
                   features_path: Optional[Path] = None) -> dict:
    """One method's row payload (metrics, resolved params, seconds). Raises on failure."""
    method = create(name, **hyperparameters)
    method.check_task(task)
    passes = loop.samples_trained
    start = time.perf_counter()
    model = method.unlearn(clip, task, loop)
    seconds = time.perf_counter() - start
    metrics, features = evaluate(model, task, loop)
    save_features(features_path, features, task)
    return {"metrics": {**metrics, "seconds": seconds}, "seconds": seconds, "params": method.params(),
            "samples_trained": loop.samples_trained - passes}
