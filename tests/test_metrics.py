"""Classifier metrics against hand-computed values and independent libraries (scipy, scikit-learn)."""
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax as sp_softmax
from scipy.stats import entropy as sp_entropy

from obliviate.vision import metrics as M


def test_softmax_and_accuracy():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 5.0]])
    np.testing.assert_allclose(M.softmax(logits), sp_softmax(logits, axis=1))
    assert M.accuracy(logits, [0, 1, 0]) == pytest.approx(2 / 3)


def test_entropy_matches_scipy():
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(M.entropy(p), [sp_entropy(row) for row in p], atol=1e-9)


def test_js_divergence_known_distributions():
    p = np.array([[1.0, 0.0]])
    q = np.array([[0.0, 1.0]])
    assert M.js_divergence(p, q)[0] == pytest.approx(math.log(2))  # disjoint supports: ln 2
    assert M.js_divergence(p, p)[0] == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(5), size=20), rng.dirichlet(np.ones(5), size=20)
    expected = [jensenshannon(x, y) ** 2 for x, y in zip(a, b)]  # scipy returns the JS distance (sqrt)
    np.testing.assert_allclose(M.js_divergence(a, b), expected, atol=1e-9)
    assert M.jsd(a, b) == pytest.approx(np.mean(expected))


def test_hand_computed_jsd():
    p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    m = np.array([0.7, 0.3])
    by_hand = 0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)) + \
        0.5 * (0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3))
    assert M.js_divergence(p, q)[0] == pytest.approx(by_hand)
    del m


def test_rf_jsd_zero_when_equal_and_positive_otherwise():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=30)
    labels = np.repeat([0, 1, 2], 10)
    assert M.rf_jsd(probs, labels, probs, labels) == pytest.approx(0.0, abs=1e-12)
    other = rng.dirichlet(np.ones(3), size=30)
    assert M.rf_jsd(probs, labels, other, labels) > 0


def test_rf_jsd_by_hand():
    # class 0 only: P = mean of forget rows, Q = mean of unseen rows, both already L1-normalised
    pf = np.array([[0.8, 0.2], [0.6, 0.4]])
    pu = np.array([[0.5, 0.5], [0.3, 0.7], [0.9, 0.1]])
    P, Q = pf.mean(0), pu.mean(0)
    expected = jensenshannon(P, Q) ** 2
    assert M.rf_jsd(pf, [0, 0], pu, [0, 0, 0]) == pytest.approx(expected)
    # classes absent from D_f do not count; a class of D_f with no unseen sample is skipped
    assert M.rf_jsd(pf, [0, 0], np.vstack([pu, [[0.1, 0.9]]]), [0, 0, 0, 1]) == pytest.approx(expected)


def test_mia_entropy_separable_and_inseparable():
    # retain outputs are confident (low entropy), held-out outputs uncertain: perfectly separable by entropy
    confident = np.tile([[0.98, 0.01, 0.01]], (50, 1))
    uncertain = np.tile([[0.34, 0.33, 0.33]], (50, 1))
    assert M.mia_entropy(confident, uncertain, confident[:10]) == 1.0
    assert M.mia_entropy(confident, uncertain, uncertain[:10]) == 0.0
    # identical distributions: the balanced attack is at chance on every forget sample set
    rng = np.random.default_rng(0)
    same = rng.dirichlet(np.ones(3), size=400)
    score = M.mia_entropy(same[:200], same[200:], rng.dirichlet(np.ones(3), size=400))
    assert 0.2 < score < 0.8


def test_mia_entropy_matches_sklearn_directly():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(3)
    r, h, f = (rng.dirichlet(np.ones(4) * a, size=n) for a, n in ((0.3, 80), (2.0, 60), (1.0, 40)))
    clf = LogisticRegression(class_weight="balanced").fit(
        np.concatenate([M.entropy(r), M.entropy(h)])[:, None], np.r_[np.ones(80), np.zeros(60)])
    assert M.mia_entropy(r, h, f) == pytest.approx(clf.predict(M.entropy(f)[:, None]).mean())


def test_mia_efficacy_separable():
    n = 60
    member = np.tile([[0.99, 0.01]], (n, 1))
    nonmember = np.tile([[0.55, 0.45]], (n, 1))
    labels = np.zeros(n, dtype=int)
    # forget samples that look like non-members -> efficacy 1; like members -> 0
    assert M.mia_efficacy(member, labels, nonmember, labels, nonmember[:10], labels[:10]) == 1.0
    assert M.mia_efficacy(member, labels, nonmember, labels, member[:10], labels[:10]) == 0.0


def test_mia_efficacy_reads_the_true_label_confidence():
    # forget samples confident in a WRONG class: p(y|x) is low (non-member-like) while max p is high (member-like)
    n = 60
    member, nonmember = np.tile([[0.99, 0.01]], (n, 1)), np.tile([[0.55, 0.45]], (n, 1))
    labels = np.zeros(n, dtype=int)
    wrong = np.tile([[0.01, 0.99]], (10, 1))
    assert M.mia_efficacy(member, labels, nonmember, labels, wrong, np.zeros(10, dtype=int)) == 1.0


def test_evaluate_feeds_rf_jsd_the_unlearned_forget_set_and_the_original_on_the_test_split(digits_task, digits_original,
                                                                                             digits_gold, loop):
    from obliviate.vision.evaluate import evaluate
    p = lambda m, split: M.softmax(loop.predict(m, digits_task.split(split)))
    want = M.rf_jsd(p(digits_gold, "forget"), digits_task.labels("forget"), p(digits_original, "test"),
                    digits_task.labels("test"))
    got = evaluate(digits_gold, digits_task, original=digits_original, loop=loop)["rf_jsd"]
    assert got == pytest.approx(want, rel=1e-9)
    # any other feed gives another value: the unseen split, or one model on both sides
    for other in (M.rf_jsd(p(digits_gold, "forget"), digits_task.labels("forget"), p(digits_original, "unseen"),
                           digits_task.labels("unseen")),
                  M.rf_jsd(p(digits_gold, "forget"), digits_task.labels("forget"), p(digits_gold, "test"),
                           digits_task.labels("test"))):
        assert abs(got - other) > 1e-6


def test_avg_gap_by_hand():
    s = {"mia": 0.5, "acc_forget": 0.9, "acc_retain": 0.95, "acc_test": 0.8}
    g = {"mia": 0.4, "acc_forget": 0.85, "acc_retain": 0.99, "acc_test": 0.82}
    assert M.avg_gap(s, g) == pytest.approx((0.1 + 0.05 + 0.04 + 0.02) / 4)
    assert M.avg_gap(g, g) == 0.0


# ------------------------------------------------------------------ edge cases found by mutation testing (docs/mutants.md)
def test_softmax_is_stable_per_row():
    # each row is shifted by its own maximum: a shift by the global maximum (or an added one) overflows/underflows
    logits = np.array([[1000.0, 999.0], [0.0, -1.0]])
    np.testing.assert_allclose(M.softmax(logits), sp_softmax(logits, axis=1))


def test_accuracy_of_one_and_of_no_sample():
    assert M.accuracy(np.array([[0.1, 0.9]]), [1]) == 1.0
    assert math.isnan(M.accuracy(np.zeros((0, 2)), []))


def test_js_divergence_is_never_negative_from_rounding():
    # p and q equal up to 1e-12: the two KL terms round to -6.7e-17 without the clip at 0
    p = np.array([[0.39214793, 0.20119172, 0.40666034]])
    p = p / p.sum()
    q = p.copy()
    q[0, 0] += 1e-12
    q = q / q.sum()
    m = 0.5 * (p + q)
    if (0.5 * M.kl(p, m) + 0.5 * M.kl(q, m))[0] < 0:   # the rounding this test is about happens on this platform
        assert M.js_divergence(p, q)[0] == 0.0
    assert (M.js_divergence(p, q) >= 0).all()


def test_rf_jsd_skips_a_class_without_held_out_samples_and_goes_on():
    pf = np.array([[0.8, 0.2, 0.0], [0.1, 0.8, 0.1]])
    pu = np.array([[0.2, 0.7, 0.1]])
    expected = jensenshannon(pf[1], pu[0]) ** 2
    assert M.rf_jsd(pf, [0, 1], pu, [1]) == pytest.approx(expected)   # class 0 (no unseen sample) skipped, 1 counted
    assert math.isnan(M.rf_jsd(pf, [0, 0], pu, [1]))                   # no class in common


def test_rf_jsd_l1_normalises_the_class_means():
    # non-negative scores that are not probabilities: P and Q are each divided by their sum (Eq. 13)
    pf, pu = np.array([[2.0, 2.0]]), np.array([[0.3, 0.1]])
    assert M.rf_jsd(pf, [0], pu, [0]) == pytest.approx(jensenshannon([0.5, 0.5], [0.75, 0.25]) ** 2)


def test_mia_efficacy_matches_sklearn_on_the_seeded_subsample():
    # overlapping members and non-members, sides of different sizes capped by max_per_side: the SVC's boundary
    # (C=3, gamma="auto", RBF) and the seed-0 subsample (without replacement) decide the fraction
    from sklearn.svm import SVC
    rng = np.random.default_rng(5)
    conf = lambda a, b, n: np.clip(rng.beta(a, b, size=n), 0.01, 0.99)
    retain_c, test_c, forget_c = conf(5, 1.5, 300), conf(2, 2, 200), np.linspace(0.02, 0.98, 500)
    as_probs = lambda c: np.stack([c, 1 - c], axis=1)
    zeros = lambda n: np.zeros(n, dtype=int)

    def by_hand(r_c, t_c, cap):
        pick = np.random.default_rng(0)
        n = min(len(r_c), len(t_c), cap)
        r, t = pick.choice(len(r_c), size=n, replace=False), pick.choice(len(t_c), size=n, replace=False)
        clf = SVC(C=3, gamma="auto", kernel="rbf").fit(np.r_[r_c[r], t_c[t]][:, None], np.r_[np.ones(n), np.zeros(n)])
        return 1.0 - clf.predict(forget_c[:, None]).mean()

    for r_c, t_c, cap in ((retain_c, test_c, 150), (retain_c, test_c, 2000), (test_c, retain_c, 2000)):
        got = M.mia_efficacy(as_probs(r_c), zeros(len(r_c)), as_probs(t_c), zeros(len(t_c)), as_probs(forget_c),
                             zeros(500), max_per_side=cap)
        assert got == pytest.approx(by_hand(r_c, t_c, cap))


def test_metrics_compute_in_float64():
    # float32 inputs (a model's outputs) are computed in float64
    z = np.array([[0.0, 1e-7, 2e-7]], dtype=np.float32)
    assert M.softmax(z).dtype == np.float64 and M.entropy(z.astype(np.float32)).dtype == np.float64


def test_rf_jsd_without_common_class_warns_nothing():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # np.mean of an empty list would warn
        assert math.isnan(M.rf_jsd(np.array([[0.5, 0.5]]), [0], np.array([[0.5, 0.5]]), [1]))

