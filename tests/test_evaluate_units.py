"""evaluate() and LogitsCache on a hand-built task with linear models: every score is recomputed here from the models'
own outputs with scipy and scikit-learn, so a wrong split, model or cache key shows. No training, no dataset: fast
enough for mutation testing (docs/mutants.md)."""
import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from scipy.stats import entropy
from sklearn.linear_model import LogisticRegression
from torch import nn

from obliviate.data import ArrayDataset
from obliviate.loop import Loop
from obliviate.task import build_task
from obliviate.vision import metrics as M
from obliviate.vision.evaluate import LogitsCache, basic_scores, evaluate

D, K = 4, 3


def toy_task(forget="random:0.25", seed=3, n_train=60, n_heldout=48):
    """Gaussian classes in 4-D; a task seed other than 0 so that a dropped seed shows."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(K, D, generator=g)
    y = torch.arange(n_train) % K
    yh = torch.arange(n_heldout) % K
    x = centres[y] + 1.5 * torch.randn(n_train, D, generator=g)
    xh = centres[yh] + 1.5 * torch.randn(n_heldout, D, generator=g)
    train = ArrayDataset(x, y)
    return build_task("toy", train, train, ArrayDataset(xh, yh), K, forget, seed, y.numpy(), yh.numpy(), (D,))


def linear(seed):
    torch.manual_seed(seed)
    return nn.Linear(D, K).eval()


def inputs(task, split):
    if split in ("forget", "retain"):
        return task.train_eval.x[getattr(task, f"{split}_idx")]
    return task.heldout.x[getattr(task, f"{split}_idx")]


def probs(model, task, split):
    """Softmax of the model's logits on a split, in float64, computed without the cache."""
    with torch.no_grad():
        return softmax(model(inputs(task, split)).double().numpy(), axis=1)


def labels(task, split):
    y = task.train_labels if split in ("forget", "retain") else task.heldout_labels
    return y[getattr(task, f"{split}_idx")]


def acc(model, task, split):
    return float((probs(model, task, split).argmax(1) == labels(task, split)).mean())


def mia_by_hand(model, task):
    # logistic regression (balanced) on the entropy of p(.|x): retain members vs test non-members; D_f called member
    h = {s: entropy(probs(model, task, s), axis=1)[:, None] for s in ("retain", "test", "forget")}
    clf = LogisticRegression(class_weight="balanced").fit(
        np.concatenate([h["retain"], h["test"]]), np.r_[np.ones(len(h["retain"])), np.zeros(len(h["test"]))])
    return float(clf.predict(h["forget"]).mean())


def rf_jsd_by_hand(model, original, task, split="test"):
    # per class of D_f: JS between the unlearned model's mean p on D_f and the ORIGINAL's mean p on the TEST split
    pf, yf = probs(model, task, "forget"), labels(task, "forget")
    pt, yt = probs(original, task, split), labels(task, split)
    values = []
    for c in np.unique(yf):
        P, Q = pf[yf == c].mean(0), pt[yt == c].mean(0)
        values.append(jensenshannon(P / P.sum(), Q / Q.sum()) ** 2)   # scipy returns the square root, in nats
    return float(np.mean(values))


class CountingLoop(Loop):
    """Records the size and batch size of every predict call."""

    def __init__(self):
        super().__init__(cpu=True, progress=False)
        self.calls = []

    def predict(self, model, dataset, batch_size=1024, output=None):
        self.calls.append((len(dataset), batch_size))
        return super().predict(model, dataset, batch_size, output)


@pytest.fixture(scope="module")
def task():
    return toy_task()


@pytest.fixture(scope="module")
def models():
    return linear(0), linear(1), linear(2)   # unlearned, original, gold


def test_cache_returns_each_models_logits_per_split_once(task, models):
    loop = CountingLoop()
    cache = LogitsCache(task, loop, batch_size=7)
    a, b, _ = models
    for split in ("forget", "test"):
        with torch.no_grad():
            np.testing.assert_allclose(cache.logits(a, split).numpy(), a(inputs(task, split)).numpy(), rtol=1e-6)
    assert loop.calls == [(len(task.forget_idx), 7), (len(task.test_idx), 7)]
    assert cache.passes == len(task.forget_idx) + len(task.test_idx)
    assert cache.logits(a, "forget") is cache.logits(a, "forget")   # a second call forwards nothing
    assert cache.passes == len(task.forget_idx) + len(task.test_idx) and len(loop.calls) == 2
    # another model on the same split is another entry
    with torch.no_grad():
        np.testing.assert_allclose(cache.logits(b, "forget").numpy(), b(inputs(task, "forget")).numpy(), rtol=1e-6)
    assert len(loop.calls) == 3


def test_cache_probs_are_the_softmax_of_the_cached_logits(task, models):
    loop = CountingLoop()
    cache = LogitsCache(task, loop)
    a = models[0]
    p = cache.probs(a, "retain")
    np.testing.assert_allclose(p, probs(a, task, "retain"), rtol=1e-6)
    assert cache.probs(a, "retain") is p and loop.calls == [(len(task.retain_idx), 1024)]
    assert cache.logits(a, "retain").shape == p.shape and len(loop.calls) == 1   # the logits were kept too


def test_forget_model_drops_only_that_models_entries(task, models):
    loop = CountingLoop()
    cache = LogitsCache(task, loop)
    a, b, _ = models
    cache.probs(a, "forget"), cache.probs(b, "forget")
    basic_scores(a, task, cache)
    n = len(loop.calls)
    cache.forget_model(a)
    assert all(k[0] != id(a) for k in cache._store)
    cache.probs(b, "forget")
    assert len(loop.calls) == n                      # b's entries were kept
    cache.probs(a, "forget")
    assert len(loop.calls) == n + 1                  # a's were recomputed


def test_basic_scores_are_the_metrics_of_each_split(task, models):
    model = models[0]
    scores = basic_scores(model, task, LogitsCache(task, CountingLoop()))
    assert set(scores) == {"acc_forget", "acc_retain", "acc_unseen", "acc_test", "mia", "mia_efficacy"}
    for split in ("forget", "retain", "unseen", "test"):
        assert scores[f"acc_{split}"] == pytest.approx(acc(model, task, split), abs=1e-12)
    assert len({scores[f"acc_{s}"] for s in ("forget", "retain", "unseen", "test")}) == 4   # the splits tell apart
    assert scores["mia"] == pytest.approx(mia_by_hand(model, task), abs=1e-12)


def test_mia_efficacy_reads_p_y_given_x_of_retain_test_and_forget_with_the_task_seed(task, models):
    model = models[0]
    p = {s: probs(model, task, s) for s in ("retain", "test", "forget")}
    y = {s: labels(task, s) for s in ("retain", "test", "forget")}
    want = M.mia_efficacy(p["retain"], y["retain"], p["test"], y["test"], p["forget"], y["forget"], seed=task.seed)
    got = basic_scores(model, task, LogitsCache(task, CountingLoop()))["mia_efficacy"]
    assert got == pytest.approx(want, abs=1e-12)
    # the retain side is subsampled to the test side's size: the seed matters here
    assert want != M.mia_efficacy(p["retain"], y["retain"], p["test"], y["test"], p["forget"], y["forget"], seed=0)


def test_basic_scores_are_memoised_and_returned_as_a_copy(task, models):
    loop = CountingLoop()
    cache = LogitsCache(task, loop)
    first = basic_scores(models[0], task, cache)
    n = len(loop.calls)
    first["acc_forget"] = -1.0
    again = basic_scores(models[0], task, cache)
    assert again["acc_forget"] == pytest.approx(acc(models[0], task, "forget")) and len(loop.calls) == n


@pytest.mark.parametrize("spec", ["class:1", "class:0,2"])
def test_class_forgetting_scores_the_forgotten_and_kept_test_classes(spec, models):
    task = toy_task(spec)
    model = models[0]
    scores = basic_scores(model, task, LogitsCache(task, CountingLoop()))
    hit = probs(model, task, "test").argmax(1) == labels(task, "test")
    gone = np.isin(labels(task, "test"), task.forgotten_classes)
    assert scores["acc_test_forgotten"] == pytest.approx(hit[gone].mean(), abs=1e-12)
    assert scores["acc_test_kept"] == pytest.approx(hit[~gone].mean(), abs=1e-12)
    assert hit[gone].mean() != hit[~gone].mean()


def test_evaluate_gives_each_metric_its_models_and_splits(task, models):
    model, original, gold = models
    loop = CountingLoop()
    cache = LogitsCache(task, loop)
    scores = evaluate(model, task, original=original, gold=gold, loop=loop, cache=cache)
    assert cache.passes > 0 and loop.calls                # the given loop and cache were used
    assert scores["rf_jsd"] == pytest.approx(rf_jsd_by_hand(model, original, task), rel=1e-6)
    jsd = np.mean([jensenshannon(p, q) ** 2 for p, q in zip(probs(model, task, "forget"), probs(gold, task, "forget"))])
    assert scores["jsd"] == pytest.approx(jsd, rel=1e-6)
    gap = np.mean([abs(mia_by_hand(model, task) - mia_by_hand(gold, task))]
                  + [abs(acc(model, task, s) - acc(gold, task, s)) for s in ("forget", "retain", "test")])
    assert scores["avg_gap"] == pytest.approx(gap, abs=1e-12)
    assert scores["acc_forget"] == pytest.approx(acc(model, task, "forget"))   # the unlearned model's own scores
    # RF-JSD's other feeds give other values: the unseen split, or one model on both sides
    assert abs(rf_jsd_by_hand(model, original, task, "unseen") - scores["rf_jsd"]) > 1e-6
    assert abs(rf_jsd_by_hand(model, model, task) - scores["rf_jsd"]) > 1e-6


def test_evaluate_without_references_or_loop(task, models):
    model, original, gold = models
    basic = {"acc_forget", "acc_retain", "acc_unseen", "acc_test", "mia", "mia_efficacy"}
    assert set(evaluate(model, task)) == basic
    assert set(evaluate(model, task, original=original)) == basic | {"rf_jsd"}
    assert set(evaluate(model, task, gold=gold)) == basic | {"jsd", "avg_gap"}
