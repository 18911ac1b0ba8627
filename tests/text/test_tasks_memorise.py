"""Each offline task separates the target from the gold model: the target states what the forget set taught it and
the gold model, which never saw the forget set, does not (a benchmark whose gold model knows the forget set, or whose
target does not, cannot rank unlearning methods)."""

from obliviate.text.family import TextFamily

SMALL_MODEL = ["model.n_embd=64", "model.n_head=2", "model.vocab_size=400"]


def _cell(task, overrides):
    family = TextFamily(task=task, overrides=SMALL_MODEL + overrides, eval_limit=40, progress=False, cpu=True)
    family.resolve()
    forget = {"authors": "forget10", "plays": "forget"}[task]
    cell = family.open_cell(0, forget)
    return cell.target_metrics, cell.evaluator.gold


def test_authors_target_states_the_forget_facts_and_the_gold_model_does_not():
    target, gold = _cell("authors", ["task.n_authors=4", "task.n_holdout=1", "recipe.epochs=40",
                                     "recipe.batch_size=16"])
    assert target["fact_f"] >= 0.6 and gold["fact_f"] <= 0.2, (target["fact_f"], gold["fact_f"])
    # both keep the retain facts alike (the gold model is a fair reference for utility)
    assert target["fact_r"] >= 0.6 and abs(target["fact_r"] - gold["fact_r"]) <= 0.15
    assert target["truth_ratio_f"] < gold["truth_ratio_f"]  # the target prefers the true fact to the wrong ones


def test_plays_target_recites_the_forget_plays_and_the_gold_model_does_not():
    target, gold = _cell("plays", ["task.excerpt_chars=700", "task.n_retain=2", "recipe.epochs=60"])
    assert target["verbmem_f"] >= gold["verbmem_f"] + 0.2, (target["verbmem_f"], gold["verbmem_f"])
    assert target["mink_auc"] > 0.9 and gold["mink_auc"] < 0.8  # membership: only the target saw the forget plays
