"""Classifier unlearning metrics. Inputs are logits or probabilities as tensors/arrays; outputs are floats.

- accuracy; MIA as in LoTUS/SSD (entropy feature, logistic regression, fraction of D_f called member);
- MIA-efficacy as in the sparsity and SalUn papers (SVC on confidence, fraction of D_f called non-member);
- JSD to the gold model (the true Jensen-Shannon divergence, natural log); RF-JSD (LoTUS, retrain-free);
- Avg Gap (LoTUS): mean absolute gap to the gold model over MIA and the forget, retain and test accuracies.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

_EPS = 1e-12


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def softmax(logits) -> np.ndarray:
    z = _np(logits)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(logits, labels) -> float:
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((_np(logits).argmax(axis=1) == labels).mean())


def entropy(probs) -> np.ndarray:
    p = _np(probs)
    return -(p * np.log(np.clip(p, _EPS, None))).sum(axis=1)


def kl(p, q) -> np.ndarray:
    """Row-wise KL(p || q) in nats."""
    p, q = _np(p), _np(q)
    return (p * (np.log(np.clip(p, _EPS, None)) - np.log(np.clip(q, _EPS, None)))).sum(axis=1)


def js_divergence(p, q) -> np.ndarray:
    """Row-wise Jensen-Shannon divergence 0.5 KL(p||m) + 0.5 KL(q||m), m = (p+q)/2, in nats (in [0, ln 2])."""
    p, q = _np(p), _np(q)
    m = 0.5 * (p + q)
    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, None)


def jsd(unlearned_forget_probs, gold_forget_probs) -> float:
    """JSD to gold: mean over x in D_f of JS(f_unlearned(x) || f_gold(x))."""
    return float(js_divergence(unlearned_forget_probs, gold_forget_probs).mean())


def rf_jsd(unlearned_forget_probs, forget_labels, original_unseen_probs, unseen_labels) -> float:
    """RF-JSD (LoTUS, Eq. 13): mean over classes c in D_f of JS(P_c || Q_c), where P_c is the L1-normalised mean softmax of
    the unlearned model on D_f samples of class c and Q_c that of the original model on held-out samples of class c
    (the paper uses the test split; ``evaluate`` does). Needs no gold model; 0 is the optimum. Classes without
    held-out samples are skipped."""
    pf, pu = _np(unlearned_forget_probs), _np(original_unseen_probs)
    fl, ul = np.asarray(forget_labels), np.asarray(unseen_labels)
    values = []
    for c in np.unique(fl):
        if not (ul == c).any():
            continue
        P = pf[fl == c].mean(axis=0)
        Q = pu[ul == c].mean(axis=0)
        values.append(js_divergence((P / P.sum())[None], (Q / Q.sum())[None])[0])
    return float(np.mean(values)) if values else float("nan")


def mia_entropy(retain_probs, heldout_probs, forget_probs) -> float:
    """MIA as in LoTUS and SSD: a logistic regression (balanced classes) on the entropy of the softmax output, fitted on
    retain (member) vs held-out (non-member) samples; returns the fraction of D_f predicted member."""
    x = np.concatenate([entropy(retain_probs), entropy(heldout_probs)])[:, None]
    y = np.concatenate([np.ones(len(retain_probs)), np.zeros(len(heldout_probs))])
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs")
    clf.fit(x, y)
    return float(clf.predict(entropy(forget_probs)[:, None]).mean())


def confidence(probs, labels) -> np.ndarray:
    p = _np(probs)
    return p[np.arange(len(p)), np.asarray(labels)]


def mia_efficacy(retain_probs, retain_labels, test_probs, test_labels, forget_probs, forget_labels,
                 seed: int = 0, max_per_side: int = 2000) -> float:
    """MIA-efficacy (Jia et al. NeurIPS 2023; Fan et al. ICLR 2024): an RBF SVC (C=3, gamma="auto") on the confidence
    p(y|x), fitted on a random retain subset (member) against the test set (non-member) of equal size; returns the
    fraction of D_f predicted NON-member (higher = more forgotten).

    Unlike the papers' code, each side is capped at ``max_per_side`` random samples: a kernel SVC's fit grows
    quadratically with its training set, and a 1-D feature needs no more points to place its threshold."""
    rng = np.random.default_rng(seed)
    n = min(len(retain_probs), len(test_probs), max_per_side)
    r = rng.choice(len(retain_probs), size=n, replace=False)
    t = rng.choice(len(test_probs), size=n, replace=False)
    x = np.concatenate([confidence(_np(retain_probs)[r], np.asarray(retain_labels)[r]),
                        confidence(_np(test_probs)[t], np.asarray(test_labels)[t])])[:, None]
    y = np.concatenate([np.ones(n), np.zeros(n)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    return float(1.0 - clf.predict(confidence(forget_probs, forget_labels)[:, None]).mean())


GAP_METRICS = ("mia", "acc_forget", "acc_retain", "acc_test")


def avg_gap(scores: dict, gold_scores: dict) -> float:
    """Avg Gap (LoTUS): (|dMIA| + |dAcc_f| + |dAcc_r| + |dAcc_t|) / 4, each d against the gold model."""
    return float(np.mean([abs(scores[k] - gold_scores[k]) for k in GAP_METRICS]))
