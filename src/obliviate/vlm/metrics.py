"""Domain-unlearning metrics (Kawamura et al., NeurIPS 2025): Mem, For and their harmonic mean H, per-domain accuracy.

- Mem: accuracy on memorize-domain test images (for class forgetting: on memorize classes, Acc_mem).
- For: 1 - accuracy on forget-domain test images (for class forgetting: error on forget classes, Err_for).
- H: the harmonic mean 2 Mem For / (Mem + For), 0 when both are 0.
Inputs are predicted and true labels as arrays; outputs are floats in [0, 1] (the report shows percentages).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def accuracy(pred, labels) -> float:
    pred, labels = np.asarray(pred), np.asarray(labels)
    return float((pred == labels).mean()) if len(labels) else float("nan")


def harmonic_mean(mem: float, forget: float) -> float:
    return 0.0 if mem + forget == 0 else float(2 * mem * forget / (mem + forget))


def domain_scores(pred, labels, domains, forget_mask, domain_names: Sequence[str]) -> Dict[str, float]:
    """Mem, For, H and the accuracy on each domain (``acc/<domain>``); ``forget_mask`` marks forget samples."""
    pred, labels, domains = np.asarray(pred), np.asarray(labels), np.asarray(domains)
    forget_mask = np.asarray(forget_mask, dtype=bool)
    mem = accuracy(pred[~forget_mask], labels[~forget_mask])
    forget = 1.0 - accuracy(pred[forget_mask], labels[forget_mask])
    out = {"mem": mem, "for": forget, "h": harmonic_mean(mem, forget)}
    for d, name in enumerate(domain_names):
        out[f"acc/{name}"] = accuracy(pred[domains == d], labels[domains == d])
    return out
