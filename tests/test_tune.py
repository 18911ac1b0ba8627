"""`obliviate tune`: a retrain-free search that never reads the gold model or the test split, resumable, bounded."""
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from obliviate.errors import ObliviateError

pytest.importorskip("optuna")

FAST = ["recipe.epochs=3", "model.width=8"]


class PoisonedModel(nn.Module):
    """A gold model whose weights raise when anything reads them."""

    def _raise(self, *a, **k):
        raise AssertionError("the gold model was read")

    parameters = named_parameters = state_dict = forward = buffers = _raise


def _guard(monkeypatch):
    from obliviate.store import ModelCache
    from obliviate.task import Task
    real_get = ModelCache.get_or_train

    def get_or_train(self, key, build, train):
        if key.get("role") == "gold":
            return PoisonedModel(), 0.0
        return real_get(self, key, build, train)

    def no_test(self):
        raise AssertionError("the test split was read")

    real_labels = Task.labels

    def labels(self, split):
        if split == "test":
            raise AssertionError("the test labels were read")
        return real_labels(self, split)

    monkeypatch.setattr(ModelCache, "get_or_train", get_or_train)
    monkeypatch.setattr(Task, "test", property(no_test))
    monkeypatch.setattr(Task, "labels", labels)


def test_the_guards_catch_a_read(monkeypatch, loop):
    from obliviate.vision.data import make_task
    from obliviate.vision.train import Recipe, train_reference
    _guard(monkeypatch)
    task = make_task("digits", "class:3", seed=0)
    with pytest.raises((AssertionError, ObliviateError), match="gold model was read"):
        train_reference("gold", task, "cnn", Recipe(epochs=1), loop, model_kwargs={"width": 8})
    with pytest.raises(AssertionError, match="test"):
        task.test
    with pytest.raises(AssertionError, match="test"):
        task.labels("test")


@pytest.mark.parametrize("forget", ["class:3", "random:0.1"])
def test_tune_never_reads_the_gold_model_or_the_test_split(forget, tmp_path, monkeypatch):
    from obliviate.vision.tune import SPACES, TuneConfig, tune
    _guard(monkeypatch)
    out = tmp_path / "preset.yaml"
    cfg = TuneConfig(dataset="digits", forget=forget, methods=["ssd"], trials=2, root=str(tmp_path), out=str(out),
                     overrides=FAST, cpu=True, progress=False)
    best = tune(cfg, log=lambda s: None)
    preset = yaml.safe_load(out.read_text())
    values = preset["methods"]["ssd"]
    assert set(SPACES["ssd"]) <= set(values)
    assert 1.0 <= values["alpha"] <= 50.0 and 0.1 <= values["lam"] <= 2.0
    assert best["ssd"]["trials"] == 2 and "retrain-free" in out.read_text().lower()


def test_tune_resumes_its_study_and_merges_presets(tmp_path):
    import optuna
    from obliviate.vision.tune import TuneConfig, tune
    out = tmp_path / "preset.yaml"
    out.write_text("# hand-written note\nmethods:\n  lotus: {alpha: 2.0}\n")
    cfg = dict(dataset="digits", forget="class:3", methods=["ssd"], root=str(tmp_path), out=str(out), overrides=FAST,
               cpu=True, progress=False)
    tune(TuneConfig(trials=2, **cfg), log=lambda s: None)
    tune(TuneConfig(trials=3, **cfg), log=lambda s: None)  # one more trial, not three
    storage = f"sqlite:///{tmp_path / 'tune-digits-cnn-class' / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.n_trials == 3
    preset = yaml.safe_load(out.read_text())
    assert preset["methods"]["lotus"] == {"alpha": 2.0} and "ssd" in preset["methods"]
    assert "# hand-written note" in out.read_text()


def test_tune_stops_at_its_time_budget(tmp_path):
    import time
    from obliviate.vision.tune import TuneConfig, tune
    start = time.perf_counter()
    best = tune(TuneConfig(dataset="digits", forget="class:3", methods=["ssd"], trials=1000, timeout=2.0,
                           root=str(tmp_path), overrides=FAST, cpu=True, progress=False), log=lambda s: None)
    assert best["ssd"]["trials"] < 1000 and time.perf_counter() - start < 120


def test_class_criterion_by_hand(digits_class_task, digits_class_original, loop):
    from obliviate.vision.tune import Criterion
    crit = Criterion(retain_tolerance=0.01, penalty=5.0)
    base = crit.baseline(digits_class_original, digits_class_task, loop)
    scored = crit.score(digits_class_original, digits_class_task, loop, base)
    t = digits_class_task
    pred = lambda split: loop.predict(digits_class_original, t.split(split)).argmax(1).numpy()
    acc_f = (pred("forget") == t.labels("forget")).mean()
    yu = t.labels("unseen")
    acc_u3 = (pred("unseen")[yu == 3] == 3).mean()
    assert scored["objective"] == pytest.approx(0.5 * (acc_f + acc_u3))  # the original keeps everything: no penalty
    # a model that forgets class 3 entirely but also loses the kept classes is penalised for the loss
    broken = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    nn.init.zeros_(broken[1].weight)
    with torch.no_grad():
        broken[1].bias.copy_(torch.arange(10.0) == 0)
    worse = crit.score(broken, t, loop, base)
    assert worse["acc_forget"] == 0.0 and worse["objective"] > 5 * 0.5


def test_random_criterion_uses_rf_jsd_on_the_unseen_split(digits_task, digits_original, digits_gold, loop):
    from obliviate.vision import metrics as M
    from obliviate.vision.tune import Criterion
    crit = Criterion()
    base = crit.baseline(digits_original, digits_task, loop)
    scored = crit.score(digits_gold, digits_task, loop, base)
    p = lambda m, s: M.softmax(loop.predict(m, digits_task.split(s)))
    want = M.rf_jsd(p(digits_gold, "forget"), digits_task.labels("forget"), p(digits_original, "unseen"),
                    digits_task.labels("unseen"))
    drop = max(0.0, base["acc_retain"] - scored["acc_retain"] - 0.01)
    assert scored["objective"] == pytest.approx(want + 5.0 * drop)


def test_bad_tune_input_fails_before_any_work(tmp_path):
    from obliviate.cli import main
    for bad in (["--methods", "nosuch"], ["--trials", "0"], ["--timeout", "-1"], ["--forget", "class:99"],
                ["--prune", "0.5"]):
        assert main(["tune", "--dataset", "digits", "--runs", str(tmp_path), "--cpu", *bad]) == 2
    assert not any(tmp_path.iterdir())


def test_class_forgetting_searches_lotus_class_alpha_not_alpha(tmp_path):
    # on classes LoTUS reads class_alpha (alpha is unused there): the study must search the value the method reads
    from obliviate.vision.tune import TuneConfig, space_for, tune
    assert "class_alpha" in space_for("lotus", "class") and "alpha" not in space_for("lotus", "class")
    assert "alpha" in space_for("lotus", "random") and space_for("ssd", "class") == space_for("ssd", "random")
    out = tmp_path / "preset.yaml"
    tune(TuneConfig(dataset="digits", forget="class:3", methods=["lotus"], trials=1, root=str(tmp_path), out=str(out),
                    overrides=FAST + ["lotus.epochs=1"], cpu=True, progress=False), log=lambda s: None)
    values = yaml.safe_load(out.read_text())["methods"]["lotus"]
    assert values["class_alpha"] in (8.0, 16.0, 32.0) and values["retain_fraction"] in (0.3, 0.6, 1.0)


def test_a_new_study_starts_from_the_preset_it_replaces(tmp_path):
    import optuna
    from obliviate.vision.tune import SPACES, TuneConfig, current_values, tune
    assert current_values({"lr": 1e-3, "epochs": 3, "alpha": 4.0, "batch_size": 8}, SPACES["lotus"]) == \
        {"lr": 1e-3, "epochs": 3, "alpha": 4.0}
    assert current_values({"lr": 5.0, "alpha": 3.0}, SPACES["lotus"]) == {}   # outside the range / not a choice
    tune(TuneConfig(dataset="digits", forget="random:0.1", methods=["ssd"], trials=2, root=str(tmp_path),
                    overrides=FAST + ["ssd.alpha=7.5", "ssd.lam=0.25"], cpu=True, progress=False), log=lambda s: None)
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'tune-digits-cnn-random' / 'study.db'}")
    study = optuna.load_study(study_name=summary.study_name,
                              storage=f"sqlite:///{tmp_path / 'tune-digits-cnn-random' / 'study.db'}")
    assert study.trials[0].params == {"alpha": 7.5, "lam": 0.25}
    # a method's defaults count as its current settings: boundary-expand's preset sets lr only, epochs is its default
    tune(TuneConfig(dataset="digits", forget="random:0.1", methods=["boundary-expand"], trials=1, root=str(tmp_path),
                    overrides=FAST, cpu=True, progress=False), log=lambda s: None)
    storage = f"sqlite:///{tmp_path / 'tune-digits-cnn-random' / 'study.db'}"
    (name,) = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("boundary")]
    from obliviate.presets import load_preset
    from obliviate.vision.methods import create
    want = create("boundary-expand", **load_preset("digits", "cnn", "random")["methods"]["boundary-expand"]).params()
    assert optuna.load_study(study_name=name, storage=storage).trials[0].params == \
        {"lr": want["lr"], "epochs": want["epochs"]}


def test_every_searched_name_is_a_setting_of_its_method():
    # a misspelt key would be passed to the method and fail (or be ignored) only at tuning time
    from obliviate.vision.methods import create
    from obliviate.vision.tune import SPACES, space_for
    for kind in ("random", "class"):
        for method in SPACES:
            space = space_for(method, kind)
            params = create(method).params()
            assert set(space) <= set(params), (method, kind, set(space) - set(params))
    # on classes the methods that train on D_r also search their batch size (BatchNorm statistics; see tune.py)
    assert "batch_size" in space_for("random-label", "class") and "batch_size" not in space_for("random-label", "random")
    assert "retain_batch_size" in space_for("scrub", "class")


@pytest.mark.parametrize("dataset", ["mnist1d", "digits", "mnist"])
@pytest.mark.parametrize("kind", ["random", "class"])
def test_shipped_presets_cover_every_tunable_method_with_valid_values(dataset, kind):
    # part of the contract: a tuned preset per (dataset, cnn, forget kind) for every method, each value accepted
    from importlib import resources
    from obliviate.presets import load_preset
    from obliviate.vision.methods import create
    from obliviate.vision.tune import SPACES
    text = (resources.files("obliviate") / "presets" / f"{dataset}-cnn-{kind}.yaml").read_text()
    assert text.startswith("# Written by `obliviate tune`")
    own = yaml.safe_load(text)["methods"]
    assert set(own) == set(SPACES), set(SPACES) ^ set(own)
    for method, values in load_preset(dataset, "cnn", kind)["methods"].items():
        params = create(method, **values).params()
        assert all(params[k] == v for k, v in values.items()), method
