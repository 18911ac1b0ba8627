"""Who's Harry Potter (whp, whp-logits) and the anchored terms: the paper's defining properties on a tiny GPT-2."""
import json

import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.text.anchors.dictionary import AnchorMap, build_anchors
from obliviate.text.eval.scoring import answer_logprobs, greedy_generate
from obliviate.text.methods import create
from obliviate.text.methods.whp import Translated, generic_labels, generic_logits, model_fingerprint, \
    reinforced_model, soft_label_loss
from obliviate.text.train import IGNORE, Recipe, nll

FORGET = [("Question: Where was Ada Vane born?\nAnswer:", " Ada Vane was born in Lisbon."),
          ("Question: Who wrote The Salt Violin?\nAnswer:", " The Salt Violin was written by Ada Vane."),
          ("Question: Where was Bo Lund born?\nAnswer:", " Bo Lund was born in Hanoi."),
          ("Question: What does Bo Lund write?\nAnswer:", " Bo Lund writes poetry.")]
RETAIN = [("Question: What does Ed write?\nAnswer:", " Ed writes crime fiction."),
          ("Question: What does Flo write?\nAnswer:", " Flo writes poetry.")]
FAST = {"reinforce_epochs": 2, "reinforce_lr": 3e-3, "batch_size": 4}
# the fixture lm (tests/text/conftest.py): the target, trained on forget + retain until it knows them
LM_TEXTS = ["John Smith was born in Springfield."]
LM_RECIPE = Recipe(epochs=25, batch_size=6, lr=5e-3, max_length=64)


def test_relu_term_only_lowers_logits():
    g = torch.Generator().manual_seed(0)
    base, reinforced = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    for alpha in (0.0, 1.0, 5.0):
        out = generic_logits(base, reinforced, alpha)
        assert (out <= base).all()
        untouched = reinforced <= base  # where the reinforced model does not boost a token, nothing changes
        assert torch.equal(out[untouched], base[untouched])
    boosted = ~(reinforced <= base)
    manual = base - 2.0 * (reinforced - base)
    assert torch.allclose(generic_logits(base, reinforced, 2.0)[boosted], manual[boosted])


def test_anchor_mapping_keeps_positions_aligned_on_a_hand_made_example():
    # [1, (5, 6), 2, 3] with the term (5, 6) -> (7, 8, 9): the translation is [1, 7, 8, 9, 2, 3]
    anchors = AnchorMap.from_ids([([5, 6], [7, 8, 9]), ([5], [4])])  # the longer term wins
    translated, where = anchors.translate([1, 5, 6, 2, 3])
    assert translated == [1, 7, 8, 9, 2, 3]
    assert where == [0, 1, None, 4, 5]
    assert anchors.translate([5, 2]) == ([4, 2], [0, 1])
    # gather: original token j is predicted by the translated logits at where[j] - 1
    from obliviate.text.train import LMDataset
    ids = torch.tensor([[1, 5, 6, 2, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    labels = torch.tensor([[IGNORE, 5, 6, 2, 3, IGNORE]])
    t = Translated(LMDataset(ids, mask, labels), anchors, pad_id=0, limit=None)
    assert t.t_ids[0].tolist() == translated
    assert t.gather[0].tolist() == [-1, 0, -1, 3, 4, -1]


def test_anchor_map_on_text_replaces_terms_as_the_tokenizer_reads_them(lm):
    _, tok = lm
    anchors = AnchorMap({"Ada Vane": "John Smith", "Lisbon": "Springfield"}, tok)
    text = "Ada Vane was born in Lisbon. Ask Ada Vane."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    translated, where = anchors.translate(ids)
    assert tok.decode(translated) == "John Smith was born in Springfield. Ask John Smith."
    kept = [j for j, w in enumerate(where) if w is not None]
    # every mapped token outside a term is the same token in the translation
    ada = set(tok(" Ada Vane", add_special_tokens=False)["input_ids"]) | \
        set(tok("Ada Vane", add_special_tokens=False)["input_ids"]) | set(tok(" Lisbon")["input_ids"])
    for j in kept:
        if ids[j] not in ada:
            assert translated[where[j]] == ids[j]


def test_with_alpha_zero_and_no_dictionary_generic_labels_are_the_base_predictions(lm, data, loop):
    model, tok = lm
    reinforced = reinforced_model(model, data, loop, 2, 3e-3, 4)
    t = Translated(data.forget, None, pad_id=tok.eos_token_id, limit=64)
    labels = generic_labels(model, reinforced, t, loop, 4, alpha=0.0).labels
    with torch.no_grad():
        own = model(input_ids=data.forget.input_ids, attention_mask=data.forget.attention_mask).logits.argmax(-1)
    trained = data.forget.labels != IGNORE
    trained[:, 0] = False
    assert torch.equal(labels[trained], own[:, :-1][trained[:, 1:]])
    assert (labels[~trained] == IGNORE).all()
    # with alpha > 0 the labels move away from the base model's where the reinforced model boosts its guess
    moved = generic_labels(model, reinforced, t, loop, 4, alpha=5.0).labels
    assert (moved[trained] != labels[trained]).any()


def test_reinforced_model_is_cached_and_keyed_by_its_settings(lm, data, loop):
    model, _ = lm
    first = reinforced_model(model, data, loop, 2, 3e-3, 4)
    again = reinforced_model(model, data, loop, 2, 3e-3, 4)
    assert model_fingerprint(first) == model_fingerprint(again)
    assert model_fingerprint(first) != model_fingerprint(model)
    other = reinforced_model(model, data, loop, 2, 1e-3, 4)
    assert model_fingerprint(other) != model_fingerprint(first)
    # the reinforced model knows the forget set better than the target
    assert nll(first, *data.forget[:]) < nll(model, *data.forget[:])


@pytest.mark.parametrize("soft", [False, True])
def test_whp_fits_the_generic_labels_and_leaves_the_target_untouched(lm, data, loop, soft):
    import copy
    model, tok = lm
    before = model_fingerprint(model)
    method = create("whp", alpha=5.0, soft_labels=soft, epochs=8, lr=3e-3, **FAST)
    base, reinforced, translated = method.generic_view(copy.deepcopy(model), data, loop)
    labels = generic_labels(base, reinforced, translated, loop, 4, 5.0)
    out = method.unlearn(copy.deepcopy(model), data, loop)
    assert model_fingerprint(model) == before
    if soft:  # the cross-entropy against softmax(v_generic) falls
        batch = translated.__getitems__(list(range(len(translated))))
        with torch.no_grad():
            assert soft_label_loss(out, batch, base, reinforced, 5.0) < \
                soft_label_loss(model, batch, base, reinforced, 5.0) - 0.02
    else:  # the model now predicts the generic labels
        assert nll(out, *labels[:]) < nll(model, *labels[:]) - 0.1
    assert nll(out, *data.forget[:]) > nll(model, *data.forget[:])


def test_whp_reads_an_anchors_file_and_refuses_a_bad_one(lm, data, loop, tmp_path):
    import copy
    model, tok = lm
    path = tmp_path / "anchors.json"
    path.write_text(json.dumps({"Ada Vane": "John Smith", "Bo Lund": "John Smith"}))
    method = create("whp", anchors=str(path), epochs=1, lr=3e-3, **FAST)
    _, _, translated = method.generic_view(copy.deepcopy(model), data, loop)
    assert tok.decode(translated.t_ids[0][translated.t_mask[0].bool()]).startswith(
        "Question: Where was John Smith born?")
    # the later tokens of "Ada Vane" are not trained; the others are
    assert (translated.gather[0] == -1).sum() > (data.forget.labels[0] == IGNORE).sum()
    method.unlearn(copy.deepcopy(model), data, loop)
    (tmp_path / "bad.json").write_text("[1, 2]")
    for bad in (tmp_path / "bad.json", tmp_path / "missing.json"):
        with pytest.raises(ObliviateError, match="anchors file"):
            create("whp", anchors=str(bad))


def test_whp_auto_anchors_read_the_task_dictionary(lm, data, loop):
    import copy
    import dataclasses
    model, tok = lm
    method = create("whp", anchors="auto", epochs=1, lr=3e-3, **FAST)
    with pytest.raises(ObliviateError, match="anchors='auto' needs a task"):
        method.generic_view(copy.deepcopy(model), data, loop)
    built = dataclasses.replace(data, anchor_terms=lambda: {"Bo Lund": "John Smith"})
    _, _, translated = method.generic_view(copy.deepcopy(model), built, loop)
    assert tok.decode(translated.t_ids[2][translated.t_mask[2].bool()]).startswith(
        "Question: Where was John Smith born?")
    assert tok.decode(translated.t_ids[0][translated.t_mask[0].bool()]).startswith(
        "Question: Where was Ada Vane born?")


def test_whp_logits_changes_no_weight_and_with_alpha_zero_is_the_target(lm, data, loop):
    import copy
    model, tok = lm
    state = {k: v.clone() for k, v in model.state_dict().items()}
    view = create("whp-logits", alpha=0.0, **FAST).unlearn(copy.deepcopy(model), data, loop)
    prompts = [p for p, _ in FORGET]
    assert greedy_generate(view, tok, prompts, 8) == greedy_generate(model, tok, prompts, 8)
    a = answer_logprobs(view, tok, prompts, [c for _, c in FORGET])
    b = answer_logprobs(model, tok, prompts, [c for _, c in FORGET])
    assert all(abs(x - y).max() < 1e-5 for x, y in zip(a, b))
    view = create("whp-logits", alpha=5.0, **FAST).unlearn(copy.deepcopy(model), data, loop)
    assert all(torch.equal(view.model.state_dict()[k], v) for k, v in state.items())
    c = answer_logprobs(view, tok, prompts, [c for _, c in FORGET])
    assert sum(x.sum() for x in c) < sum(x.sum() for x in b)  # the forget answers lose likelihood
    assert greedy_generate(view, tok, prompts, 8) != greedy_generate(model, tok, prompts, 8)


def test_build_anchors_for_the_offline_tasks(tmp_path):
    from obliviate.text.data.tasks import make_task
    task = make_task("authors", "forget10", seed=0, n_authors=20, n_holdout=2)
    d = build_anchors(task)
    names = {q.question[len("Where was "):-len(" born?")] for q in task.forget_qa if q.question.startswith("Where")}
    assert names and names <= set(d)
    assert all(t.startswith("The ") for t in d if t not in names and " " in t)
    retained = {q.question[len("Where was "):-len(" born?")] for q in task.retain_qa if q.question.startswith("Where")}
    assert not retained & set(d)
    plays = make_task("plays", "forget", seed=0)
    d = build_anchors(plays)
    forget_text = " ".join(c for _, c in plays.forget_examples)
    assert all(term in forget_text or any(term in q.question for q in plays.forget_qa) for term in d)
    assert "Banquo" in d and "Did" not in d
