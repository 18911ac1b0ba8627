"""Losses of domain unlearning: cross-entropy to the uniform target and the Domain Disentangling Loss's MMD^2."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def uniform_target_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy between the uniform distribution over classes and softmax(logits):
    -1/C sum_c log p_c, minimal (= log C) exactly when the prediction is uniform."""
    return -F.log_softmax(logits, dim=-1).mean(dim=-1).mean()


def median_bandwidth(x: torch.Tensor) -> torch.Tensor:
    """The median of the pairwise Euclidean distances between distinct rows of ``x`` (no gradient)."""
    with torch.no_grad():
        d = torch.cdist(x, x)
        iu = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
        med = torch.quantile(d[iu[0], iu[1]], 0.5) if len(x) > 1 else torch.ones((), device=x.device)
        return med.clamp_min(1e-6)


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """k(a, b) = exp(-||a - b||^2 / (2 sigma^2)) for every pair of rows."""
    return torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma ** 2))


def mmd2(a: torch.Tensor, b: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Biased estimate of the squared MMD between samples ``a`` and ``b``: the squared distance between their mean
    embeddings in the kernel's feature space, mean k(a,a') + mean k(b,b') - 2 mean k(a,b)."""
    return (gaussian_kernel(a, a, sigma).mean() + gaussian_kernel(b, b, sigma).mean()
            - 2 * gaussian_kernel(a, b, sigma).mean())


def domain_mmd2(features: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """MMD^2 averaged over every pair of domains present in the batch (Gaussian kernel, bandwidth = median pairwise
    distance of the batch's features). 0 when the batch holds fewer than two domains."""
    present = torch.unique(domains)
    if len(present) < 2:
        return features.sum() * 0.0
    sigma = median_bandwidth(features)
    groups = [features[domains == d] for d in present]
    terms = [mmd2(groups[i], groups[j], sigma) for i in range(len(groups)) for j in range(i + 1, len(groups))]
    return torch.stack(terms).mean()
