import pytest
from scipy.stats import hmean

from obliviate.vlm.metrics import domain_scores, harmonic_mean


def test_domain_scores_by_hand():
    pred = [0, 1, 1, 0, 2, 2]
    labels = [0, 1, 0, 0, 2, 1]
    domains = [0, 0, 1, 1, 2, 2]
    forget = [False, False, False, False, True, True]   # domain 2 is forgotten
    s = domain_scores(pred, labels, domains, forget, ("a", "b", "c"))
    assert s["mem"] == pytest.approx(3 / 4)             # 0,1 right; 1!=0 wrong; 0 right
    assert s["for"] == pytest.approx(1 - 1 / 2)
    assert s["h"] == pytest.approx(hmean([0.75, 0.5]))
    assert (s["acc/a"], s["acc/b"], s["acc/c"]) == (1.0, 0.5, 0.5)


def test_harmonic_mean_edges():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.8, 0.4) == pytest.approx(hmean([0.8, 0.4]))
