"""Per-epoch selection without the gold model, and collapse detection on retain fact accuracy."""
import pytest

from obliviate.loop import Loop
from obliviate.text.data.tasks import make_task
from obliviate.text.run import Evaluator, collapsed, finish_row


@pytest.fixture(scope="module")
def evaluator():
    task = make_task("authors", "forget10", seed=0, n_authors=10, n_holdout=2)
    return Evaluator(task, Loop(cpu=True, progress=False), limit=5)


def _m(fact_f, utility, **extra):
    return {"fact_f": fact_f, "utility": utility, **extra}


def test_selection_keeps_retain_knowledge_then_minimises_forget_knowledge(evaluator):
    epochs = {1: _m(0.6, 0.97), 2: _m(0.2, 0.92), 3: _m(0.0, 0.40)}
    assert evaluator.select_epoch(epochs, target_utility=1.0, keep=0.9) == 2  # epoch 3 forgets more but collapsed
    assert evaluator.select_epoch(epochs, target_utility=1.0, keep=0.3) == 3
    tie = {1: _m(0.2, 0.91), 2: _m(0.2, 0.95), 3: _m(0.2, 0.95)}
    assert evaluator.select_epoch(tie, 1.0, 0.9) == 2  # equal forgetting: more utility, then the earlier epoch
    ruined = {1: _m(0.0, 0.30), 2: _m(0.0, 0.10)}
    assert evaluator.select_epoch(ruined, 1.0, 0.9) == 1  # nothing kept: the least damaged epoch


def test_selection_never_reads_the_gold_model(evaluator):
    epochs = {1: _m(0.5, 0.95, forget_quality=1.0, privleak=0.0), 2: _m(0.1, 0.95, forget_quality=1e-9,
                                                                         privleak=-90.0)}
    evaluator.gold = {"truth_ratios_f": [1.0], "mink_auc": 0.5}
    assert evaluator.select_epoch(epochs, 1.0, 0.9) == 2
    evaluator.gold = {}
    assert evaluator.select_epoch(epochs, 1.0, 0.9) == 2


def test_documents_select_on_verbmem_and_knowmem(evaluator):
    epochs = {1: {"verbmem_f": 0.5, "knowmem_f": 0.1, "utility": 0.9}, 2: {"verbmem_f": 0.2, "utility": 0.9}}
    assert evaluator.select_epoch(epochs, 1.0, 0.9) == 2


def test_collapse_reads_retain_fact_accuracy_and_model_utility():
    assert collapsed({"utility": 0.3, "model_utility": 0.9}, target_utility=0.8, threshold=0.5)
    assert not collapsed({"utility": 0.5, "model_utility": 0.9}, 0.8, 0.5)
    target = {"model_utility": 0.6}
    assert collapsed({"utility": 0.5, "model_utility": 0.2}, 0.8, 0.5, target)  # utility kept, model utility not
    row = {}
    finish_row(row, {"utility": 0.5, "model_utility": 0.2}, 1.0, 0.8, 0.5, target)
    assert row["collapsed"] and row["utility_ratio"] == pytest.approx(0.625)
