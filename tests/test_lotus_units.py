"""LoTUS against the paper's equations on a hand-built 4-D task with a linear model: Eq. 11's temperature, the
Gumbel-softmax teacher, Eq. 12's loss, the training set (all of D_f plus a seeded 30% of D_r), class unlearning
(Acc(T, D_u) := 0, alpha = 32) and the kept epoch. Every expected value is computed here from the models' own outputs.
No dataset and milliseconds of training: fast enough for mutation testing (docs/mutants.md)."""
import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import log_softmax, softmax
from torch import nn

from obliviate.data import ArrayDataset, Tagged
from obliviate.loop import Loop
from obliviate.task import build_task
from obliviate.vision.methods import lotus as L
from obliviate.vision.methods.lotus import LoTUS

D, K = 4, 3


def toy_task(forget="random:0.25", seed=3, augment=None, n_train=60, n_heldout=60):
    """Gaussian classes in 4-D. ``augment``: a transform of the training view only (the evaluation view has none)."""
    g = torch.Generator().manual_seed(seed)
    centres = 0.8 * torch.randn(K, D, generator=g)   # overlapping classes: D_f is fitted better than D_u
    y, yh = torch.arange(n_train) % K, torch.arange(n_heldout) % K
    x = centres[y] + torch.randn(n_train, D, generator=g)
    xh = centres[yh] + torch.randn(n_heldout, D, generator=g)
    train_eval = ArrayDataset(x, y)
    train = train_eval if augment is None else ArrayDataset(x, y, transform=augment)
    return build_task("toy", train, train_eval, ArrayDataset(xh, yh), K, forget, seed, y.numpy(), yh.numpy(), (D,))


def original_for(task, steps=300):
    """A linear model fitted (full batch) to the whole training set: it fits D_f better than held-out data."""
    torch.manual_seed(0)
    model = nn.Linear(D, K)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = task.train_eval.x, task.train_eval.y
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def outputs(model, x):
    with torch.no_grad():
        return model(x).double().numpy()


def acc_on(model, x, y):
    return float((outputs(model, x).argmax(1) == np.asarray(y)).mean())


def acc(model, task, split):
    x = task.train_eval.x if split in ("forget", "retain") else task.heldout.x
    idx = getattr(task, f"{split}_idx")
    return acc_on(model, x[idx], task.labels(split))


class SpyLoop(Loop):
    """A CPU loop that records the training loader and the arguments of fit, and keeps a copy of the model before
    every epoch and after the last one. ``train=False``: fit returns at once (to call loss_fn and before_epoch by hand)."""

    def __init__(self, train=True):
        super().__init__(cpu=True, progress=False)
        self.train, self.loaders, self.snapshots, self.fit_args = train, [], [], None

    def loader(self, dataset, batch_size, shuffle=False, drop_last=False, seed=0):
        dl = super().loader(dataset, batch_size, shuffle, drop_last, seed)
        if isinstance(dataset, Tagged):
            self.loaders.append(dict(dataset=dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, loader=dl))
        return dl

    def fit(self, model, optimizer, loader, loss_fn, epochs=1, desc="train", before_epoch=None, **kw):
        self.fit_args = dict(model=model, optimizer=optimizer, loader=loader, loss_fn=loss_fn, epochs=epochs, desc=desc,
                             before_epoch=before_epoch, kw=kw)
        if not self.train:
            return model

        def snapshot_then(epoch):
            self.snapshots.append(copy.deepcopy(model))
            return before_epoch(epoch)

        out = super().fit(model, optimizer, loader, loss_fn, epochs, desc, snapshot_then, **kw)
        self.snapshots.append(copy.deepcopy(out))
        return out


@pytest.fixture(scope="module")
def task():
    return toy_task()


@pytest.fixture(scope="module")
def original(task):
    return original_for(task)


@pytest.fixture(scope="module")
def class_task():
    return toy_task("class:1")


@pytest.fixture(scope="module")
def class_original(class_task):
    return original_for(class_task)


def run(method, model, task, loop):
    torch.manual_seed(0)   # the Gumbel noise: the same draws whichever tests ran before (mutmut runs subsets)
    return method.unlearn(copy.deepcopy(model), task, loop)


# ------------------------------------------------------------------ Eq. 11 and the Gumbel-softmax teacher
def test_paper_defaults():
    m = LoTUS()
    assert (m.alpha, m.class_alpha, m.epochs, m.lr, m.batch_size, m.weight_decay, m.retain_fraction, m.gumbel) == \
        (2.0, 32.0, 10, 1e-4, 128, 5e-4, 0.3, True)
    assert (m.class_unlearning, m.stop_below_parity, m.keep_best, m.retain_tolerance, m.seed) == \
        (None, False, None, 0.03, 0)


def test_temperature_is_eq_11():
    m = LoTUS()
    for acc_s, acc_t, alpha in [(0.9, 0.6, 2.0), (0.5, 0.75, 8.0), (0.25, 0.0, 32.0), (0.7, 0.7, 4.0)]:
        assert m.temperature(acc_s, acc_t, alpha) == pytest.approx(math.exp(alpha * (acc_s - acc_t)), rel=1e-12)
    assert m.temperature(0.9, 0.6, 2.0) > 1.0 > m.temperature(0.6, 0.9, 2.0)   # smooth when above parity, sharpen below


def test_targets_without_noise_are_softmax_over_tau_for_forget_and_one_hot_for_retain():
    z = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 1.5, -2.0], [-1.0, 0.0, 2.5]])
    flags = torch.tensor([1.0, 0.0, 1.0, 0.0])
    for tau in (0.5, 3.0):
        t = LoTUS(gumbel=False).targets(z, flags, tau).double().numpy()
        zz = z.double().numpy()
        np.testing.assert_allclose(t[[0, 2]], softmax(zz[[0, 2]] / tau, axis=1), rtol=1e-6)
        np.testing.assert_array_equal(t[[1, 3]], np.eye(K)[zz[[1, 3]].argmax(1)])


def test_gumbel_targets_are_softmax_of_logits_plus_gumbel_noise_over_tau():
    # gs(z, tau) = softmax((z + g) / tau), g ~ Gumbel(0, 1): tau * log t - z recovers g up to a per-row constant, so
    # the difference of two recovered noises is the difference of two Gumbel(0, 1) variables: Logistic(0, 1)
    torch.manual_seed(1)
    n, tau = 20000, 2.5
    z = torch.tensor([[1.0, -0.5, 0.25]]).repeat(n, 1)
    t = LoTUS().targets(z, torch.ones(n), tau).double().numpy()
    g = tau * np.log(t) - z.double().numpy()
    assert stats.kstest(g[:, 0] - g[:, 1], stats.logistic.cdf).pvalue > 0.01
    assert stats.kstest(g[:, 1] - g[:, 2], stats.logistic.cdf).pvalue > 0.01
    assert np.std(g[:, 0] - g[:, 1]) == pytest.approx(math.pi / math.sqrt(3), rel=0.03)


def test_gumbel_retain_targets_are_teacher_samples_and_the_zero_temperature_limit():
    n = 20000
    z = torch.tensor([[1.0, -0.5, 0.25]]).repeat(n, 1)
    torch.manual_seed(2)
    soft = LoTUS().targets(z, torch.ones(n), 0.7)
    torch.manual_seed(2)
    hard = LoTUS().targets(z, torch.zeros(n), 0.7)   # same noise: the one-hot of the same perturbed logits
    np.testing.assert_array_equal(hard.numpy(), np.eye(K)[soft.numpy().argmax(1)])
    # Gumbel-max: argmax(z + g) is a sample of softmax(z)
    np.testing.assert_allclose(hard.double().mean(0).numpy(), softmax(z[0].double().numpy()), atol=0.01)


@pytest.mark.parametrize("u", [0.0, 1.0])
def test_targets_stay_finite_at_the_ends_of_the_uniform_draw(monkeypatch, u):
    # -log(-log(u)) is infinite at u = 0 and u = 1; the draw is clamped inside (0, 1)
    monkeypatch.setattr(torch, "rand_like", lambda x: torch.full_like(x, u))
    t = LoTUS().targets(torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 1.0]]), torch.tensor([1.0, 0.0]), 2.0)
    assert torch.isfinite(t).all()
    np.testing.assert_allclose(t[0].numpy(), softmax(np.array([1.0, 0.0, -1.0]) / 2.0), rtol=1e-5)  # equal noise


# ------------------------------------------------------------------ unlearn: modes, history, data, optimiser, loss
@pytest.mark.parametrize("spec,override,class_mode", [("random:0.25", None, False), ("class:1", None, True),
                                                      ("random:0.25", True, True), ("class:1", False, False)])
def test_instance_and_class_modes_follow_the_paper(spec, override, class_mode):
    # instance: alpha, Acc(T, D_u) measured on D_u; class unlearning (appendix): Acc(T, D_u) := 0, alpha = class_alpha
    task = toy_task(spec)
    original = original_for(task)
    loop = SpyLoop()
    method = LoTUS(alpha=3.0, class_alpha=5.0, epochs=2, lr=0.05, batch_size=16, class_unlearning=override,
                   keep_best=False)
    run(method, original, task, loop)
    acc_u = 0.0 if class_mode else acc(original, task, "unseen")
    alpha = 5.0 if class_mode else 3.0
    assert len(method.history_) == 2 and len(loop.snapshots) == 3
    for epoch, (record, before) in enumerate(zip(method.history_, loop.snapshots)):
        acc_f = acc(before, task, "forget")
        assert record == pytest.approx({"epoch": epoch, "acc_forget": acc_f, "acc_teacher_unseen": acc_u,
                                        "alpha": alpha, "tau": math.exp(alpha * (acc_f - acc_u))}, rel=1e-12)


def test_teacher_accuracy_is_the_originals_on_the_unseen_split(task, original):
    method = LoTUS(epochs=1, keep_best=False)
    run(method, original, task, SpyLoop())
    assert method.history_[0]["acc_teacher_unseen"] == pytest.approx(acc(original, task, "unseen"), rel=1e-12)
    assert acc(original, task, "unseen") not in (acc(original, task, "test"), acc(original, task, "forget"))
    assert method.history_[0]["acc_forget"] == pytest.approx(acc(original, task, "forget"), rel=1e-12)


@pytest.mark.parametrize("fraction", [0.3, 0.5])
def test_training_set_is_all_of_the_forget_set_and_a_seeded_retain_fraction(task, original, fraction):
    def drawn(seed, t):
        loop = SpyLoop(train=False)
        run(LoTUS(epochs=1, retain_fraction=fraction, seed=seed, batch_size=8), original, t, loop)
        (spy,) = loop.loaders
        return spy

    spy = drawn(0, task)
    data, nf = spy["dataset"], len(task.forget_idx)
    np.testing.assert_array_equal(data.indices[:nf], task.forget_idx)
    subset = data.indices[nf:]
    assert len(subset) == round(fraction * len(task.retain_idx)) and len(set(subset)) == len(subset)
    assert np.isin(subset, task.retain_idx).all()
    np.testing.assert_array_equal(data.tags.numpy(), np.r_[np.ones(nf), np.zeros(len(subset))])
    assert data.positions and data.base is task.train      # the training view (with its augmentation, if any)
    assert (spy["batch_size"], spy["shuffle"], spy["seed"]) == (8, True, 0 + task.seed)
    # seeded: the same draw again, and another method seed draws another subset
    np.testing.assert_array_equal(drawn(0, task)["dataset"].indices, data.indices)
    assert not np.array_equal(drawn(1, task)["dataset"].indices, data.indices)


def test_optimiser_is_adamw_with_the_methods_lr_and_weight_decay(task, original):
    loop = SpyLoop(train=False)
    method = LoTUS(epochs=7, lr=3e-3, weight_decay=2e-2)
    run(method, original, task, loop)
    opt = loop.fit_args["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]) == (3e-3, 2e-2)
    assert (loop.fit_args["epochs"], loop.fit_args["desc"]) == (7, "lotus")   # the NaN guard's message names LoTUS
    assert loop.fit_args["loader"] is loop.loaders[0]["loader"]


@pytest.mark.parametrize("augment", [None, lambda x: x + 0.5])
def test_loss_is_eq_12_against_the_teacher_on_the_batch_the_student_sees(augment):
    # Eq. 12 with the softmax ablation (deterministic targets): -sum_c target_c log softmax(S(x))_c, batch mean, where
    # target = softmax(T(x) / tau_d) on D_f and one_hot(argmax T(x)) on D_r; with augmentation the teacher sees the
    # augmented batch, without it the cached logits must be the same numbers
    task = toy_task(augment=augment)
    original = original_for(task)
    loop = SpyLoop(train=False)
    method = LoTUS(alpha=3.0, gumbel=False, batch_size=32, keep_best=False)
    run(method, original, task, loop)
    assert loop.fit_args["before_epoch"](0) is True
    tau = method.history_[0]["tau"]
    assert tau == pytest.approx(math.exp(3.0 * (acc(original, task, "forget") - acc(original, task, "unseen"))))
    assert tau != pytest.approx(1.0)
    student = nn.Linear(D, K)
    for batch in loop.fit_args["loader"]:
        x, y, is_forget, pos = batch
        z = outputs(original, x)
        f = is_forget.numpy() == 1
        assert 0 < f.sum() < len(f)
        target = np.where(f[:, None], softmax(z / tau, axis=1), np.eye(K)[z.argmax(1)])
        want = -(target * log_softmax(outputs(student, x), axis=1)).sum(1).mean()
        assert loop.fit_args["loss_fn"](student, batch).item() == pytest.approx(want, rel=1e-5)
        # labels are never read
        assert loop.fit_args["loss_fn"](student, (x, (y + 1) % K, is_forget, pos)).item() == pytest.approx(want, rel=1e-5)


def test_stop_below_parity_stops_at_d_le_minus_001(task, original, monkeypatch):
    # d = Acc(S, D_f) - Acc(T, D_u); the reference code's stop is d <= -0.01 (0.01 - 0.02 == -0.01 exactly in floats)
    for stop in (True, False):
        accs = iter([0.02, 0.01, 0.015, 0.0, 0.5])   # Acc(T, D_u), then Acc(S, D_f) before epochs 0..3
        monkeypatch.setattr(L, "eval_accuracy", lambda *a, **k: next(accs))
        loop = SpyLoop(train=False)
        run(LoTUS(stop_below_parity=stop, keep_best=False), original, task, loop)
        assert [loop.fit_args["before_epoch"](e) for e in range(4)] == [not stop, True, not stop, True]


# ------------------------------------------------------------------ the kept epoch
def test_class_unlearning_returns_the_best_evaluated_epoch(class_task, class_original):
    loop = SpyLoop()
    method = LoTUS(epochs=5, lr=0.1, batch_size=8, retain_tolerance=0.05)
    model = run(method, class_original, class_task, loop)
    h = method.history_
    assert len(h) == 6 and [r["epoch"] for r in h] == list(range(6)) and h[-1]["tau"] is None
    assert all(r["alpha"] == 32.0 and r["acc_teacher_unseen"] == 0.0 for r in h)
    subset = loop.loaders[0]["dataset"].indices[len(class_task.forget_idx):]
    kept = np.flatnonzero(class_task.labels("unseen") != 1)
    xu = class_task.heldout.x[class_task.unseen_idx]
    rows = []
    for epoch, snap in enumerate(loop.snapshots):
        r = dict(acc_forget=acc(snap, class_task, "forget"),
                 acc_retain_subset=acc_on(snap, class_task.train_eval.x[subset], class_task.train_labels[subset]),
                 acc_unseen_kept=acc_on(snap, xu[kept], class_task.labels("unseen")[kept]))
        assert {k: h[epoch][k] for k in r} == pytest.approx(r, rel=1e-12)
        rows.append(r)
    ok = [e for e, r in enumerate(rows) if r["acc_retain_subset"] >= rows[0]["acc_retain_subset"] - 0.05
          and r["acc_unseen_kept"] >= rows[0]["acc_unseen_kept"] - 0.05]
    best = min(ok, key=lambda e: (rows[e]["acc_forget"], -rows[e]["acc_retain_subset"], e))
    assert method.chosen_epoch_ == best and 0 < best < 5   # neither the original nor the last state
    for k, v in model.state_dict().items():
        assert torch.equal(v, loop.snapshots[best].state_dict()[k]), k


def test_keep_best_can_be_turned_off_for_classes_and_on_for_instances(task, original, class_task, class_original):
    loop = SpyLoop()
    method = LoTUS(epochs=3, lr=0.1, batch_size=8, keep_best=False)
    model = run(method, class_original, class_task, loop)
    assert len(method.history_) == 3 and not hasattr(method, "chosen_epoch_")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loop.snapshots[-1].state_dict()[k])
    # instance unlearning with keep_best: the target is Acc(T, D_u), the only check the retain subset
    loop = SpyLoop()
    method = LoTUS(alpha=8.0, epochs=3, lr=0.1, batch_size=8, keep_best=True, retain_tolerance=1.0)
    model = run(method, original, task, loop)
    h = method.history_
    assert len(h) == 4 and "acc_unseen_kept" not in h[0] and "acc_retain_subset" in h[0]
    target = acc(original, task, "unseen")
    best = min(range(4), key=lambda e: (abs(h[e]["acc_forget"] - target), -h[e]["acc_retain_subset"], e))
    assert method.chosen_epoch_ == best
    for k, v in model.state_dict().items():
        assert torch.equal(v, loop.snapshots[best].state_dict()[k])


def offer_all(monkeypatch, offers, target, tolerance):
    """Offer states whose check accuracies are scripted: offers = [(acc_forget, acc_retain, acc_kept), ...]."""
    monkeypatch.setattr(L, "eval_accuracy", lambda model, data, labels, loop: offers[model.epoch][data])
    keeper = L._BestEpoch([(1, None), (2, None)], target=target, tolerance=tolerance)
    for epoch, row in enumerate(offers):
        model = nn.Linear(1, 1)
        model.epoch = epoch
        assert keeper.offer(epoch, model, row[0], loop=None) == {"acc_retain_subset": row[1], "acc_unseen_kept": row[2]}
    return keeper.epoch


def test_best_epoch_floor_is_the_first_state_minus_the_tolerance(monkeypatch):
    # binary fractions: 0.75 - 0.25 == 0.5 exactly; a state AT the floor stays within the tolerance
    assert offer_all(monkeypatch, [(1.0, 0.75, 0.75), (0.125, 0.5, 0.5), (0.0, 0.4375, 0.75)], 0.0, 0.25) == 1
    assert offer_all(monkeypatch, [(1.0, 0.75, 0.75), (0.125, 0.5, 0.5), (0.0, 0.75, 0.4375)], 0.0, 0.25) == 1
    # the floors stay those of the first state, however well later states do
    assert offer_all(monkeypatch, [(1.0, 0.5, 0.5), (0.5, 1.0, 1.0), (0.0, 0.375, 0.375)], 0.0, 0.125) == 2
    # when every later state is below a floor, the first one (the original) is kept
    assert offer_all(monkeypatch, [(1.0, 0.75, 0.75), (0.0, 0.25, 0.75)], 0.0, 0.25) == 0


def test_best_epoch_is_the_closest_to_the_target_from_either_side(monkeypatch):
    assert offer_all(monkeypatch, [(1.0, 1.0, 1.0), (0.25, 1.0, 1.0), (0.625, 1.0, 1.0)], 0.5, 0.0) == 2
    assert offer_all(monkeypatch, [(1.0, 1.0, 1.0), (0.625, 1.0, 1.0), (0.25, 1.0, 1.0)], 0.5, 0.0) == 1


def test_best_epoch_ties_go_to_the_higher_retain_accuracy_then_the_earlier_epoch(monkeypatch):
    assert offer_all(monkeypatch, [(1.0, 0.5, 0.5), (0.0, 0.75, 1.0), (0.0, 1.0, 0.75)], 0.0, 1.0) == 2
    assert offer_all(monkeypatch, [(1.0, 0.5, 0.5), (0.0, 1.0, 0.75), (0.0, 0.75, 1.0)], 0.0, 1.0) == 1
    assert offer_all(monkeypatch, [(1.0, 0.5, 0.5), (0.0, 1.0, 1.0), (0.0, 1.0, 1.0)], 0.0, 1.0) == 1


def test_best_epoch_keeps_a_copy_of_the_chosen_state(monkeypatch):
    monkeypatch.setattr(L, "eval_accuracy", lambda *a, **k: 1.0)
    keeper = L._BestEpoch([(None, None)], target=0.0, tolerance=0.1)
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    keeper.offer(0, model, 0.0, loop=None)
    with torch.no_grad():
        model.weight.fill_(2.0)    # training goes on in place after the offer
    keeper.offer(1, model, 0.5, loop=None)
    assert keeper.epoch == 0 and torch.equal(keeper.state["weight"], torch.ones(1, 2))


def test_the_final_state_can_be_the_kept_one(class_task, class_original):
    # one epoch: the original (epoch 0) and the trained final state (epoch 1), which forgets more within the tolerance
    loop = SpyLoop()
    method = LoTUS(epochs=1, lr=0.1, batch_size=8, retain_tolerance=1.0)
    model = run(method, class_original, class_task, loop)
    assert method.history_[1]["acc_forget"] < method.history_[0]["acc_forget"]
    assert method.chosen_epoch_ == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, loop.snapshots[1].state_dict()[k])


@pytest.mark.parametrize("augment", [None, lambda x: x + 0.5])
def test_the_teacher_runs_once_per_sample_without_augmentation(augment):
    # documented speed-up: with no augmentation the frozen teacher's logits are computed once, not once per epoch
    task = toy_task(augment=augment)
    model = original_for(task)
    seen = []
    # deepcopy keeps the hook, so it fires in the teacher too; the teacher is the copy whose weights are frozen
    model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])) if not m.weight.requires_grad else None)
    method = LoTUS(epochs=3, batch_size=16, keep_best=False)
    run(method, model, task, SpyLoop())
    n = len(task.forget_idx) + round(0.3 * len(task.retain_idx))
    assert sum(seen) == len(task.unseen_idx) + (n if augment is None else 3 * n)
