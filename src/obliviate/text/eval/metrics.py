"""Language-model unlearning metrics, as pure functions of token log-probs, logits, texts and score arrays.

- ROUGE-L (Lin 2004) through the ``rouge-score`` package: VerbMem and KnowMem (MUSE) and TOFU's ROUGE.
- Membership-inference scores per text. Convention: a HIGHER score means MORE LIKELY A MEMBER (training text).
  Loss (Yeom et al. 2018), zlib ratio (Carlini et al. 2021), Min-K% Prob (Shi et al. 2024), Min-K%++ (Zhang et al.
  2024); ``mia_auc`` is the ROC AUC of members (positive class) against non-members; PrivLeak (MUSE).
- TOFU (Maini et al. 2024): truth ratio, forget quality (KS-test p-value), model utility (harmonic mean).
- Exact memorisation and extraction strength (Wang et al. 2025, "Towards Effective Evaluations and Comparisons for
  LLM Unlearning Methods", ICLR 2025, arXiv:2406.09179).
"""
from __future__ import annotations

import re
import zlib
from typing import Dict, List, Sequence

import numpy as np
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from ...errors import ObliviateError

_EPS = 1e-12


def _tokens(logprobs, name: str = "logprobs") -> np.ndarray:
    a = np.asarray(logprobs, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ObliviateError(f"{name} is empty: a score needs at least one token")
    return a


# ---------------------------------------------------------------- ROUGE

def rouge_l(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = True) -> Dict[str, List[float]]:
    """ROUGE-L of each prediction against its reference: ``{"f1": [...], "recall": [...], "precision": [...]}``.

    Uses ``rouge_score``'s RougeScorer(["rougeL"], use_stemmer=True) as TOFU and OpenUnlearning do: lower-cased
    alphanumeric tokens, Porter-stemmed ("writes" = "write"), longest common subsequence; recall = LCS / |reference|,
    precision = LCS / |prediction|, F1 their harmonic mean.
    """
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ObliviateError(f"got {len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    out: Dict[str, List[float]] = {"f1": [], "recall": [], "precision": []}
    for pred, ref in zip(predictions, references):
        s = scorer.score(ref, pred)["rougeL"]  # score(target, prediction)
        out["f1"].append(float(s.fmeasure))
        out["recall"].append(float(s.recall))
        out["precision"].append(float(s.precision))
    return out


# ---------------------------------------------------------------- facts

def normalize(text: str) -> str:
    """Lower case, every run of non-alphanumeric characters a single space (SQuAD-style answer normalisation)."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def fact_match(prediction: str, fact: str) -> float:
    """1.0 when the normalised ``fact`` appears in the normalised prediction as whole words, else 0.0: does the
    answer STATE the fact, whatever its wording (ROUGE also rewards the answer's template around a wrong fact)."""
    f = normalize(fact)
    if not f:
        raise ObliviateError("fact_match needs a non-empty fact")
    return float(f" {f} " in f" {normalize(prediction)} ")


# ---------------------------------------------------------------- membership inference (higher = member)

def loss_score(logprobs) -> float:
    """Mean token log-prob, i.e. minus the loss (Yeom et al. 2018): members have low loss."""
    return float(_tokens(logprobs).mean())


def zlib_score(text: str, logprobs) -> float:
    """Mean token log-prob divided by the zlib-compressed length of the text in bytes (Carlini et al. 2021,
    "Extracting Training Data from Large Language Models", USENIX Security): minus the log-perplexity / zlib entropy
    ratio, so that texts that are likely yet not merely repetitive score high."""
    return loss_score(logprobs) / len(zlib.compress(text.encode("utf-8")))


def _lowest_mean(values: np.ndarray, k: float) -> float:
    if not 0.0 < k <= 1.0:
        raise ObliviateError(f"k must be a fraction in (0, 1], not {k}")
    # the ceil(...) of some papers would differ only on very short texts; at least one token always counts
    n = max(1, int(len(values) * k))
    return float(np.sort(values)[:n].mean())


def min_k_score(logprobs, k: float = 0.4) -> float:
    """Min-K% Prob (Shi et al. 2024, "Detecting Pretraining Data from Large Language Models", ICLR, arXiv:2310.16789):
    the mean of the lowest ``max(1, floor(k * n))`` of the n token log-probs. MUSE uses k = 0.4."""
    return _lowest_mean(_tokens(logprobs), k)


def min_k_plus_plus(logprobs, mu, sigma, k: float = 0.4) -> float:
    """Min-K%++ (Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting Pre-Training Data from Large Language
    Models", ICLR 2025, arXiv:2404.02936): each token's log-prob standardised by the mean ``mu`` and standard deviation
    ``sigma`` of log p(v) under the model's next-token distribution, (log p(x_t) - mu_t) / sigma_t, then the mean of
    the lowest k fraction."""
    lp, m, s = _tokens(logprobs), _tokens(mu, "mu"), _tokens(sigma, "sigma")
    if not lp.shape == m.shape == s.shape:
        raise ObliviateError(f"logprobs, mu and sigma differ in length: {lp.shape}, {m.shape}, {s.shape}")
    return _lowest_mean((lp - m) / np.maximum(s, _EPS), k)


def mia_auc(member_scores, nonmember_scores) -> float:
    """ROC AUC of a membership score (higher = more likely member) with members as the positive class: 1 = members
    all score above non-members, 0.5 = indistinguishable, 0 = members all score below."""
    m = np.asarray(member_scores, dtype=np.float64).reshape(-1)
    n = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    if m.size == 0 or n.size == 0:
        raise ObliviateError("mia_auc needs at least one member and one non-member score")
    if not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise ObliviateError("mia_auc: scores contain NaN or inf")
    labels = np.concatenate([np.ones(m.size), np.zeros(n.size)])
    return float(roc_auc_score(labels, np.concatenate([m, n])))


def privleak(auc_unlearned: float, auc_gold: float) -> float:
    """PrivLeak (MUSE, Shi et al. 2024, arXiv:2407.06460): (AUC_unlearned - AUC_gold) / AUC_gold * 100.

    MUSE orients its AUC with the forget set as the NEGATIVE class (an un-unlearned model scores near 0 and gets about
    -100); pass ``1 - mia_auc(forget, holdout)`` values to get MUSE's sign: near 0 is ideal, negative means
    under-unlearning, positive over-unlearning. NaN when ``auc_gold`` is 0."""
    if auc_gold == 0:
        return float("nan")
    return float((auc_unlearned - auc_gold) / auc_gold * 100.0)


# ---------------------------------------------------------------- TOFU

def normalized_probability(logprobs) -> float:
    """Length-normalised probability P(y|x)^(1/|y|) = exp(mean token log-prob)."""
    return float(np.exp(_tokens(logprobs).mean()))


def truth_ratio(paraphrased_logprobs, perturbed_logprobs_list: Sequence) -> float:
    """TOFU truth ratio of one question: R = (geometric mean over perturbed answers of P(a_pert|q)^(1/|a_pert|))
    / P(a_para|q)^(1/|a_para|). R < 1: the model prefers the (paraphrased) truth; R near 1: it cannot tell."""
    if len(perturbed_logprobs_list) == 0:
        raise ObliviateError("truth_ratio needs at least one perturbed answer")
    perturbed = np.mean([_tokens(lp, "perturbed logprobs").mean() for lp in perturbed_logprobs_list])
    return float(np.exp(perturbed - _tokens(paraphrased_logprobs, "paraphrased logprobs").mean()))


def truth_score(ratios) -> float:
    """TOFU's utility form of the truth ratio: mean of max(0, 1 - R) (1 = truth strongly preferred)."""
    r = np.asarray(ratios, dtype=np.float64)
    return float(np.maximum(0.0, 1.0 - r).mean())


def truth_score_forget(ratios) -> float:
    """TOFU's forget-set form: mean of min(R, 1/R) (1 = truth and falsehood equally likely)."""
    r = np.asarray(ratios, dtype=np.float64)
    return float(np.minimum(r, 1.0 / np.maximum(r, _EPS)).mean())


def forget_quality(tr_unlearned, tr_gold) -> float:
    """TOFU forget quality: p-value of the two-sample Kolmogorov-Smirnov test between the forget-set truth ratios of
    the unlearned and the gold model (high = indistinguishable from retraining). KS is invariant to monotone maps, so
    R and TOFU's 1/R give the same p-value."""
    a, b = np.asarray(tr_unlearned, dtype=np.float64), np.asarray(tr_gold, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ObliviateError("forget_quality needs truth ratios from both models")
    return float(ks_2samp(a, b).pvalue)


def model_utility(values: Sequence[float]) -> float:
    """TOFU model utility: the harmonic mean of its component scores (probability, ROUGE-L recall and truth score on
    retain and on any further utility sets); 0 when any component is 0."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0 or (v < 0).any() or not np.isfinite(v).all():
        raise ObliviateError(f"model_utility needs non-negative finite values, got {v.tolist()}")
    if (v == 0).any():
        return 0.0
    return float(v.size / (1.0 / v).sum())


# ---------------------------------------------------------------- memorisation of answers (teacher-forced)

def _predictions(logits, labels):
    y = np.asarray(labels).reshape(-1)
    if y.size == 0:
        raise ObliviateError("labels are empty: an answer needs at least one token")
    z = np.asarray(logits)
    pred = z.argmax(axis=-1) if z.ndim == 2 else z.reshape(-1)
    if pred.shape != y.shape:
        raise ObliviateError(f"{pred.shape[0]} predictions for {y.shape[0]} labels")
    return pred, y


def exact_memorization(logits, labels) -> float:
    """Fraction of answer tokens whose teacher-forced argmax equals the label (Tirumala et al. 2022).

    ``logits``: (|y|, vocab) next-token logits at the answer positions, or the (|y|,) argmax token ids already taken.
    """
    pred, y = _predictions(logits, labels)
    return float((pred == y).mean())


def extraction_strength(logits, labels) -> float:
    """Extraction strength (Wang et al. 2025, arXiv:2406.09179): ES = 1 - k*/|y|, where k* is the shortest answer
    prefix y_<k (k = 0..|y|) after which the model greedily reproduces the rest y_>=k exactly.

    With teacher forcing, greedy decoding from y_<k reproduces y_>=k exactly iff the argmax at every position t >= k
    equals y_t (each greedy step then sees the true prefix), so k* = the number of positions up to and including the
    last mismatch. ES = 1: the whole answer is generated from the question alone; ES = 0: even its last token is not.
    (OpenUnlearning's loop stops at k = |y| - 1 and gives 1/|y| to an answer whose last token is wrong.)
    """
    pred, y = _predictions(logits, labels)
    wrong = np.flatnonzero(pred != y)
    k_star = 0 if wrong.size == 0 else int(wrong[-1]) + 1
    return float(1.0 - k_star / y.size)
