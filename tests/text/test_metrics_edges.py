"""Edge cases of the language-model metrics that mutation testing (`make mutants`) showed unguarded: exact error
messages, flattening of 2-D inputs, defaults, one-element inputs, Min-K%++'s division by sigma."""
import re

import numpy as np
import pytest

from obliviate.errors import ObliviateError
from obliviate.text.eval import metrics as M


def _raises(message, fn, *args, **kwargs):
    with pytest.raises(ObliviateError) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message  # exact and case-sensitive: the message is what the user reads


def test_error_messages_name_the_input_and_the_rule():
    _raises("logprobs is empty: a score needs at least one token", M.min_k_score, [])
    _raises("mu is empty: a score needs at least one token", M.min_k_plus_plus, [-1.0], [], [1.0])
    _raises("sigma is empty: a score needs at least one token", M.min_k_plus_plus, [-1.0], [0.0], [])
    _raises("logprobs, mu and sigma differ in length: (2,), (1,), (1,)", M.min_k_plus_plus, [-1.0, -2.0], [0.0],
            [1.0])
    _raises("got 1 predictions but 2 references", M.rouge_l, ["a"], ["a", "b"])
    _raises("fact_match needs a non-empty fact", M.fact_match, "Paris", "")
    _raises("k must be a fraction in (0, 1], not 1.5", M.min_k_score, [-1.0, -2.0], 1.5)
    _raises("mia_auc needs at least one member and one non-member score", M.mia_auc, [0.1], [])
    _raises("mia_auc: scores contain NaN or inf", M.mia_auc, [0.1, np.nan], [0.2])
    _raises("truth_ratio needs at least one perturbed answer", M.truth_ratio, [-1.0], [])
    _raises("perturbed logprobs is empty: a score needs at least one token", M.truth_ratio, [-1.0], [[]])
    _raises("paraphrased logprobs is empty: a score needs at least one token", M.truth_ratio, [], [[-1.0]])
    _raises("forget_quality needs truth ratios from both models", M.forget_quality, [], [1.0])
    _raises("forget_quality needs truth ratios from both models", M.forget_quality, [1.0], [])
    _raises("model_utility needs non-negative finite values, got [0.5, -0.1]", M.model_utility, [0.5, -0.1])
    _raises("labels are empty: an answer needs at least one token", M.exact_memorization, np.zeros((0, 3)), [])
    _raises("2 predictions for 3 labels", M.exact_memorization, np.zeros((2, 3)), [0, 1, 2])


def test_npo_refuses_a_non_positive_beta_with_its_message():
    from obliviate.text.methods import create
    with pytest.raises(ObliviateError, match=re.escape("npo: beta must be positive") + "$"):
        create("npo", beta=0.0)


def test_one_element_inputs_are_valid():
    assert M.mia_auc([0.9], [0.1]) == 1.0 and M.mia_auc([0.1, 0.2], [0.9]) == 0.0
    assert 0.0 <= M.forget_quality([1.0], [1.0, 2.0]) <= 1.0 and 0.0 <= M.forget_quality([1.0, 2.0], [1.0]) <= 1.0
    assert M.model_utility([0.4]) == pytest.approx(0.4)
    assert M.min_k_score([-1.0, -3.0], 1.0) == pytest.approx(-2.0)  # k = 1: every token


def test_two_dimensional_inputs_are_flattened():
    lp = [[-1.0, -4.0], [-2.0, -3.0]]  # lowest 50% of 4 tokens: -4, -3
    assert M.min_k_score(lp, 0.5) == pytest.approx(-3.5)
    assert M.mia_auc([[0.9, 0.8]], [[0.1], [0.95]]) == pytest.approx(0.5)  # 2 of 4 pairs ranked right
    logits = np.eye(3)  # predicts 0, 1, 2
    assert M.exact_memorization(logits, [[0, 1, 2]]) == 1.0


def test_min_k_defaults_to_the_lowest_40_percent():
    lp = [-1.0, -2.0, -3.0, -4.0, -5.0]  # lowest 40%: -5, -4
    assert M.min_k_score(lp) == pytest.approx(-4.5)
    assert M.min_k_plus_plus(lp, [0.0] * 5, [1.0] * 5) == pytest.approx(-4.5)


def test_min_k_plus_plus_divides_by_sigma():
    # z = (lp - mu) / sigma = (-1 - 0) / 2, (-3 - 1) / 4 = -0.5, -1.0; lowest half: -1.0
    assert M.min_k_plus_plus([-1.0, -3.0], [0.0, 1.0], [2.0, 4.0], 0.5) == pytest.approx(-1.0)
    assert M.min_k_plus_plus([-1.0, -3.0], [0.0, 1.0], [2.0, 4.0], 1.0) == pytest.approx(-0.75)
