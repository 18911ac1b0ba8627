"""Language-model metrics against values computed by hand or by an independent computation."""
import math
import re
import zlib

import numpy as np
import pytest
from scipy.stats import hmean

from obliviate.errors import ObliviateError
from obliviate.text.eval import metrics as M


def _lcs(a, b):
    """Longest common subsequence length by dynamic programming."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def _words(text):
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def test_rouge_l_hand_pair():
    # reference a b c d, prediction a c d e: LCS = a c d = 3 -> recall 3/4, precision 3/4, F1 3/4
    s = M.rouge_l(["a c d e"], ["a b c d"])
    assert s["recall"] == pytest.approx([0.75]) and s["precision"] == pytest.approx([0.75])
    assert s["f1"] == pytest.approx([0.75])
    # reference 6 words, prediction 3 words, LCS 2 ("the", "mat"): recall 2/6, precision 2/3, F1 = 2PR/(P+R) = 4/9
    s = M.rouge_l(["The MAT, the"], ["the cat sat on the mat"])
    assert s["recall"][0] == pytest.approx(2 / 6) and s["precision"][0] == pytest.approx(2 / 3)
    assert s["f1"][0] == pytest.approx(4 / 9)


def test_rouge_l_matches_own_lcs():
    rng = np.random.default_rng(0)
    vocab = ["alpha", "beta", "gamma", "delta", "eps"]
    preds = [" ".join(rng.choice(vocab, rng.integers(1, 9))) for _ in range(20)]
    refs = [" ".join(rng.choice(vocab, rng.integers(1, 9))) for _ in range(20)]
    s = M.rouge_l(preds, refs)
    s = M.rouge_l(preds, refs, use_stemmer=False)
    for i, (p, r) in enumerate(zip(preds, refs)):
        lcs = _lcs(_words(p), _words(r))
        rec, prec = lcs / len(_words(r)), lcs / len(_words(p))
        assert s["recall"][i] == pytest.approx(rec)
        assert s["precision"][i] == pytest.approx(prec)
        assert s["f1"][i] == pytest.approx(0.0 if lcs == 0 else 2 * rec * prec / (rec + prec))


def test_rouge_l_stems_as_tofu_does():
    # "writes"/"write" and "novels"/"novel" share a Porter stem: recall 1 with the stemmer, 1/3 without
    assert M.rouge_l(["Ada write novel"], ["Ada writes novels"])["recall"] == pytest.approx([1.0])
    assert M.rouge_l(["Ada write novel"], ["Ada writes novels"], use_stemmer=False)["recall"] == pytest.approx([1 / 3])


def test_fact_match_is_a_normalised_whole_word_match():
    assert M.fact_match("Ada was born in Lisbon.", "Lisbon") == 1.0
    assert M.fact_match("ADA WAS BORN IN LISBON!", "lisbon") == 1.0
    assert M.fact_match("Ada was born in Lisbonne.", "Lisbon") == 0.0  # whole words only
    assert M.fact_match("It won the Amber-Quill Prize", "the Amber Quill Prize") == 1.0  # punctuation ignored
    assert M.fact_match("Ada was born in Porto.", "Lisbon") == 0.0
    assert M.normalize("  The  Amber, Quill! ") == "the amber quill"
    with pytest.raises(ObliviateError):
        M.fact_match("x", " ,")


def test_rouge_l_length_mismatch():
    with pytest.raises(ObliviateError):
        M.rouge_l(["a"], ["a", "b"])


def test_loss_and_zlib_scores():
    lp = np.log([0.5, 0.25, 0.125])
    assert M.loss_score(lp) == pytest.approx(-2 * math.log(2))
    text = "to be or not to be, that is the question"
    assert M.zlib_score(text, lp) == pytest.approx(-2 * math.log(2) / len(zlib.compress(text.encode())))
    with pytest.raises(ObliviateError):
        M.loss_score([])


def test_min_k_score_hand():
    lp = [-3.0, -1.0, -5.0, -2.0, -4.0]
    assert M.min_k_score(lp, k=0.4) == pytest.approx(-4.5)  # lowest 2 of 5: -5, -4
    assert M.min_k_score(lp, k=1.0) == pytest.approx(-3.0)  # all: plain mean
    assert M.min_k_score(lp, k=0.1) == pytest.approx(-5.0)  # floor(0.5) = 0 -> at least one token
    with pytest.raises(ObliviateError):
        M.min_k_score(lp, k=0.0)


def test_min_k_plus_plus_hand():
    lp = np.array([-1.0, -2.0, -3.0, -4.0])
    mu = np.array([-1.0, -1.0, -2.0, -2.0])
    sigma = np.array([1.0, 0.5, 2.0, 1.0])
    # z = (lp - mu) / sigma = [0, -2, -0.5, -2]; lowest int(0.5 * 4) = 2: -2, -2
    assert M.min_k_plus_plus(lp, mu, sigma, k=0.5) == pytest.approx(-2.0)
    assert M.min_k_plus_plus(lp, mu, sigma, k=1.0) == pytest.approx(-4.5 / 4)
    with pytest.raises(ObliviateError):
        M.min_k_plus_plus(lp, mu[:3], sigma, k=0.5)


def test_mia_auc_conventions():
    assert M.mia_auc([3, 4, 5], [0, 1, 2]) == 1.0  # members score higher: fully recognised
    assert M.mia_auc([0, 1, 2], [3, 4, 5]) == 0.0
    assert M.mia_auc([1, 1], [1, 1]) == 0.5
    # pairs (member > non-member): 0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1 -> 3 of 4
    assert M.mia_auc([0.9, 0.4], [0.5, 0.1]) == pytest.approx(0.75)
    with pytest.raises(ObliviateError):
        M.mia_auc([], [1.0])
    with pytest.raises(ObliviateError):
        M.mia_auc([float("nan")], [1.0])


def test_privleak():
    assert M.privleak(0.3, 0.5) == pytest.approx(-40.0)
    assert M.privleak(0.5, 0.5) == 0.0
    assert math.isnan(M.privleak(0.5, 0.0))


def test_truth_ratio_hand():
    para = np.log([0.5, 0.5])                      # length-normalised probability 0.5
    perturbed = [np.log([0.25]), np.log([0.0625, 0.0625, 0.0625])]  # 0.25 and 0.0625: geometric mean 0.125
    assert M.truth_ratio(para, perturbed) == pytest.approx(0.125 / 0.5)
    assert M.normalized_probability(np.log([0.2, 0.8])) == pytest.approx(0.4)
    assert M.truth_score([0.25, 2.0]) == pytest.approx((0.75 + 0.0) / 2)
    assert M.truth_score_forget([0.25, 2.0]) == pytest.approx((0.25 + 0.5) / 2)
    with pytest.raises(ObliviateError):
        M.truth_ratio(para, [])


def test_forget_quality_ks():
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    assert M.forget_quality(a, a.copy()) == pytest.approx(1.0)
    assert M.forget_quality(a, a + 3.0) < 1e-6
    # fully separated samples of 5 and 5: the exact two-sided p-value is 2 / C(10, 5)
    assert M.forget_quality([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / math.comb(10, 5))


def test_model_utility_harmonic_mean():
    assert M.model_utility([1.0, 0.5, 0.25]) == pytest.approx(3 / (1 + 2 + 4))
    v = [0.3, 0.9, 0.55, 0.7]
    assert M.model_utility(v) == pytest.approx(hmean(v))
    assert M.model_utility([0.5, 0.0]) == 0.0
    with pytest.raises(ObliviateError):
        M.model_utility([0.5, -0.1])


def test_exact_memorization():
    logits = np.array([[0.1, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 5.0, 0.0]])  # argmax 1, 0, 2, 1
    labels = np.array([1, 0, 0, 1])
    assert M.exact_memorization(logits, labels) == pytest.approx(0.75)
    assert M.exact_memorization(np.array([1, 0, 2, 1]), labels) == pytest.approx(0.75)  # argmax ids work too
    with pytest.raises(ObliviateError):
        M.exact_memorization(logits[:3], labels)


def _es_by_definition(pred, labels):
    n = len(labels)
    k_star = min(k for k in range(n + 1) if np.array_equal(pred[k:], labels[k:]))
    return 1 - k_star / n


def test_extraction_strength_hand_and_definition():
    y = np.array([4, 5, 6, 7])
    assert M.extraction_strength(y, y) == 1.0                      # reproduced from the question alone
    assert M.extraction_strength(np.array([4, 5, 6, 0]), y) == 0.0  # even the last token is wrong
    assert M.extraction_strength(np.array([4, 0, 6, 7]), y) == 0.5  # needs the prefix y_<2
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 8))
        labels = rng.integers(0, 3, n)
        pred = rng.integers(0, 3, n)
        assert M.extraction_strength(pred, labels) == pytest.approx(_es_by_definition(pred, labels))
    logits = np.eye(3)[[0, 2, 1]]  # argmax 0, 2, 1
    assert M.extraction_strength(logits, np.array([1, 2, 1])) == pytest.approx(1 - 1 / 3)
