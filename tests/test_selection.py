"""Worst-case forget sets (Fan et al., ECCV 2024): the projection, reproducibility, the forget spec and the CLI."""
import numpy as np
import pytest
from scipy.optimize import minimize

from obliviate.errors import ObliviateError

FAST = dict(epochs=2, unroll_epochs=1, batch_size=256)


@pytest.mark.parametrize("seed,n,m", [(0, 12, 3.0), (1, 30, 7.0), (2, 8, 1.0)])
def test_projection_matches_a_constrained_least_squares_solver(seed, n, m):
    from obliviate.vision.selection import project_capped_simplex
    a = np.random.default_rng(seed).normal(0.3, 1.0, n)
    w = project_capped_simplex(a, m)
    assert w.min() >= 0 and w.max() <= 1 and w.sum() == pytest.approx(m, abs=1e-9)
    ref = minimize(lambda v: ((v - a) ** 2).sum(), np.full(n, m / n), jac=lambda v: 2 * (v - a), method="SLSQP",
                   bounds=[(0, 1)] * n, constraints=[{"type": "eq", "fun": lambda v: v.sum() - m}],
                   options={"ftol": 1e-14, "maxiter": 500})
    assert np.allclose(w, ref.x, atol=1e-5)


def test_projection_keeps_feasible_points_and_rejects_impossible_sums():
    from obliviate.vision.selection import project_capped_simplex
    w = np.array([0.2, 0.5, 0.3, 1.0])
    assert np.allclose(project_capped_simplex(w, 2.0), w)
    with pytest.raises(ObliviateError):
        project_capped_simplex(w, 5.0)


def test_selection_is_reproducible_per_seed(digits_task, digits_original, loop):
    from obliviate.vision.selection import WorstCaseSelector
    first = WorstCaseSelector(size=0.05, seed=3, **FAST)
    idx = first.select(digits_original, digits_task, loop)
    again = WorstCaseSelector(size=0.05, seed=3, **FAST).select(digits_original, digits_task, loop)
    m = int(round(0.05 * len(digits_task.train_labels)))
    assert len(idx) == m == len(np.unique(idx)) and np.array_equal(idx, again)
    assert first.weights_.sum() == pytest.approx(m) and first.weights_.min() >= 0 and first.weights_.max() <= 1


def test_worst_case_picks_what_the_lower_level_keeps_fitting(digits_task, digits_original, loop):
    from obliviate.vision.selection import WorstCaseSelector
    sel = WorstCaseSelector(size=0.1, epochs=1, unroll_epochs=1)
    idx = sel.select(digits_original, digits_task, loop)
    n = len(digits_task.train_labels)
    w0 = sel.initial_weights(n, sel.count(n))  # one step from the random binary start
    losses = sel._unlearned_losses(digits_original, digits_task, w0, __import__("torch").as_tensor(
        digits_task.train_labels), loop, 0)
    chosen = np.zeros(len(losses), bool)
    chosen[idx] = True
    # one projected step from w0: the top-m of w0 - w_lr * losses
    expected = np.sort(np.argsort(-(w0 - sel.w_lr * losses), kind="stable")[:sel.count(n)])
    assert np.array_equal(idx, expected)


def test_selection_starts_from_a_random_binary_subset():
    from obliviate.vision.selection import WorstCaseSelector
    w = WorstCaseSelector(seed=4).initial_weights(50, 7)
    assert set(np.unique(w)) == {0.0, 1.0} and w.sum() == 7
    assert not np.array_equal(w, WorstCaseSelector(seed=5).initial_weights(50, 7))
    sel = WorstCaseSelector(unroll_epochs=4)
    assert [sel.l1_at(t) for t in range(4)] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])


def test_the_lower_level_reads_the_weights(digits_task, digits_original, loop):
    # samples with w = 1 are excluded from fine-tuning, so after the unroll their losses rise against the rest
    import torch
    from obliviate.vision.selection import WorstCaseSelector
    sel = WorstCaseSelector(unroll_epochs=2, theta_lr=0.01)
    n = len(digits_task.train_labels)
    labels = torch.as_tensor(digits_task.train_labels)
    half = np.zeros(n)
    half[: n // 2] = 1.0
    excluded = sel._unlearned_losses(digits_original, digits_task, half, labels, loop, 0)
    included = sel._unlearned_losses(digits_original, digits_task, np.zeros(n), labels, loop, 0)
    h = n // 2
    # relative to the other half of the same run (a lower level that ignores w makes both runs identical)
    assert excluded[:h].mean() / excluded[h:].mean() > 1.02 * included[:h].mean() / included[h:].mean()


def test_classwise_selection_returns_whole_classes(digits_task, digits_original, loop):
    from obliviate.vision.selection import WorstCaseSelector
    idx = WorstCaseSelector(size=2, classwise=True, **FAST).select(digits_original, digits_task, loop)
    classes = np.unique(digits_task.train_labels[idx])
    assert len(classes) == 2
    assert np.array_equal(idx, np.flatnonzero(np.isin(digits_task.train_labels, classes)))


def test_bad_selection_settings_fail_early():
    from obliviate.vision.selection import WorstCaseSelector
    with pytest.raises(ObliviateError, match="lower-level"):
        WorstCaseSelector(method="magic")
    assert WorstCaseSelector(size=0.2).count(10) == 2 and WorstCaseSelector(size=3).count(10) == 3
    for size in (10, 0.01):  # everything, or nothing
        with pytest.raises(ObliviateError, match="at least one"):
            WorstCaseSelector(size=size).count(10)


def test_worst_case_forget_spec_is_computed_and_cached(tmp_path, monkeypatch):
    from obliviate.store import default_cache_dir
    from obliviate.vision.data import make_task
    context = {"recipe": {"epochs": 2, "batch_size": 128}, "model_kwargs": {"width": 8}, "selection": FAST}
    task = make_task("digits", "worst-case:0.05", seed=0, context=context)
    assert len(task.forget_idx) == int(round(0.05 * len(task.train_labels)))
    files = list((default_cache_dir() / "selections").glob("*.txt"))
    assert len(files) == 1
    again = make_task("digits", "worst-case:0.05", seed=0, context=context)
    assert np.array_equal(task.forget_idx, again.forget_idx)
    assert len(list((default_cache_dir() / "selections").glob("*.txt"))) == 1


def test_cli_writes_an_index_file_usable_as_a_forget_spec(tmp_path, capsys):
    from obliviate.cli import main
    from obliviate.vision.data import make_task
    out = tmp_path / "worst.txt"
    rc = main(["select-forget", "--dataset", "digits", "--size", "0.05", "--epochs", "1", "--unroll-epochs", "1",
               "--set", "recipe.epochs=2", "--set", "model.width=8", "--out", str(out), "--cpu", "--no-progress"])
    assert rc == 0
    task = make_task("digits", f"indices:{out}", seed=0)
    assert len(task.forget_idx) == int(round(0.05 * len(task.train_labels)))
    # bad input fails before any training: 12 of 10 classes, an unknown lower level
    assert main(["select-forget", "--dataset", "digits", "--size", "12", "--classwise", "--out", str(out)]) == 2
    assert main(["select-forget", "--dataset", "digits", "--out", str(out), "--method", "x"]) == 2
    assert "out of" not in capsys.readouterr().err
