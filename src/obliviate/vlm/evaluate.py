"""Evaluation of a (prompted) CLIP on a domain task: class logits and image features on the test set, computed once
per model in eval mode and large batches; Mem / For / H and per-domain accuracy from them."""
from __future__ import annotations

import numpy as np
import torch

from ..loop import Loop
from .data import DomainTask
from .metrics import domain_scores
from .models import ClipModel
from .prompts import PromptedClip


def zero_shot(clip: ClipModel, task: DomainTask) -> PromptedClip:
    """The original model: CLIP classifying zero-shot with the task's template, without any prompt."""
    return PromptedClip(clip, task.class_names, task.template, n_prompts=0, depth=0, n_ctx=0).eval()


def test_outputs(model: PromptedClip, task: DomainTask, loop: Loop, batch_size: int = 512):
    """(logits [N, C], image features [N, dim]) of the test set, in one pass."""
    out = loop.predict(model, task.test, batch_size,
                       output=lambda m, x: (lambda f: torch.cat([m.logits(f), f], dim=1))(m.image_features(x)))
    return out[:, :task.num_classes], out[:, task.num_classes:]


def scores(logits: torch.Tensor, task: DomainTask) -> dict:
    pred = logits.argmax(1).numpy()
    return domain_scores(pred, task.test.labels.numpy(), task.test.domains.numpy(), task.test.forget.numpy(),
                         task.domain_names)


def evaluate(model: PromptedClip, task: DomainTask, loop: Loop) -> tuple[dict, np.ndarray]:
    """Metrics of ``model`` on the task's test set, and its test image features (for the feature figure)."""
    logits, features = test_outputs(model, task, loop)
    return scores(logits, task), features.numpy()
