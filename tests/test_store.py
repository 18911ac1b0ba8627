"""Run store, checkpoints, model cache, and the guards that stop bad runs before they do harm."""
import copy
import json
import os
import time

import pytest
import torch
from torch import nn

from obliviate.errors import NonFiniteLossError, ObliviateError
from obliviate.store import ModelCache, RunStore, atomic_write_text, config_hash, load_checkpoint, save_checkpoint
from obliviate.vision import create, make_model, unlearn
from obliviate.vision.methods.base import Method


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "row.json"
    atomic_write_text(target, "old")

    def crash(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["row.json"]  # the temporary file was removed


def test_run_store_rows(tmp_path):
    store = RunStore(tmp_path / "runs" / "x")
    store.write_row({"run_id": "a/b c", "metrics": {"acc": 1.0}, "family": "vision", "method": "m", "seed": 0,
                     "forget": "class:1", "status": "ok", "config_hash": "h"})
    assert store.has("a/b c") and not store.has("other")
    (store.rows_dir / "broken.json").write_text("{not json")
    assert [r["run_id"] for r in store.rows()] == ["a/b c"]


def test_checkpoint_round_trip(tmp_path, digits_task):
    a = make_model("cnn", digits_task, width=8)
    path = save_checkpoint(a, tmp_path / "m.safetensors")
    b = load_checkpoint(make_model("cnn", digits_task, width=8), path)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(make_model("cnn", digits_task, width=4), path)


def test_model_cache_trains_once(tmp_path, digits_task):
    cache = ModelCache(tmp_path)
    calls = []

    def train(m):
        calls.append(1)
        with torch.no_grad():
            m.head.bias.fill_(0.5)
        return m
    build = lambda: make_model("cnn", digits_task, width=8)
    m1, _ = cache.get_or_train({"role": "original", "k": 1}, build, train)
    m2, _ = cache.get_or_train({"role": "original", "k": 1}, build, train)
    assert len(calls) == 1 and torch.all(m2.head.bias == 0.5)
    cache.get_or_train({"role": "original", "k": 2}, build, train)
    assert len(calls) == 2
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


class _Exploding(Method):
    """A test double whose loss becomes NaN: the loop must stop it and leave the original untouched."""
    name = "exploding"

    def unlearn(self, model, task, loop):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = loop.loader(task.train_split("forget"), 32)
        return loop.fit(model, opt, loader, lambda m, b: m(b[0]).sum() * float("nan"), 1, desc="exploding")


def test_nan_loss_stops_and_original_untouched(digits_task, digits_original, loop):
    before = copy.deepcopy(digits_original.state_dict())
    with pytest.raises(NonFiniteLossError, match="original model is untouched"):
        unlearn(_Exploding(), digits_original, digits_task, loop)
    for k, v in digits_original.state_dict().items():
        assert torch.equal(v, before[k])


def test_wrong_output_width(digits_task, loop):
    wrong = make_model("cnn", (1, 8, 8), 7)
    with pytest.raises(ObliviateError, match="output width must be 10"):
        unlearn(create("lotus"), wrong, digits_task, loop)
    with pytest.raises(ObliviateError, match="cannot take this task's inputs"):
        unlearn(create("lotus"), nn.Linear(3, 10), digits_task, loop)


def test_unknown_method_and_hyperparameter():
    with pytest.raises(ObliviateError, match="Known methods: .*lotus"):
        create("lotos")
    with pytest.raises(ObliviateError, match="no hyperparameter 'alpah'"):
        create("lotus", alpah=2)
    assert create("lotus", alpha="4", gumbel="false").gumbel is False


def test_rows_are_json(tmp_path):
    store = RunStore(tmp_path)
    store.write_row({"run_id": "r", "x": torch.tensor(1.5)})
    assert json.loads(store.row_path("r").read_text())["x"] == 1.5


def _row(run_id, **extra):
    return {"run_id": run_id, "family": "vision", "method": "m", "seed": 0, "forget": "class:1", "status": "ok",
            "config_hash": "h", "metrics": {"acc": 1.0}, **extra}


def test_rows_are_validated_when_read(tmp_path, capsys):
    store = RunStore(tmp_path / "x")
    store.write_row(_row("good"))
    store.write_row(_row("moved"))
    os.replace(store.row_path("moved"), store.row_path("elsewhere"))  # its id no longer matches its file
    old = _row("old")
    del old["config_hash"]                                           # a row of an older version
    store.write_row(old)
    store.write_row(_row("nometrics", metrics=None))
    assert [r["run_id"] for r in store.rows()] == ["good"]
    err = capsys.readouterr().err
    assert err.count("damaged row") == 3 and "does not match the file name" in err and "config_hash" in err
    assert len(list((store.rows_dir / "damaged").iterdir())) == 3


def test_checkpoint_without_checksum_is_retrained(tmp_path, digits_task):
    from obliviate.store import ModelCache
    cache = ModelCache(tmp_path)
    key = {"role": "original", "x": 1}
    calls = []

    def train(m):
        calls.append(1)
        return m
    build = lambda: make_model("cnn", digits_task, width=8)  # noqa: E731
    cache.get_or_train(key, build, train)
    cache.get_or_train(key, build, train)
    assert len(calls) == 1  # verified and loaded
    meta = cache.path(key).with_suffix(".json")
    meta.write_text(json.dumps({"key": key, "seconds": 1.0}))  # no checksum: never trusted
    cache.get_or_train(key, build, train)
    assert len(calls) == 2 and "sha256" in json.loads(meta.read_text())


def test_stale_temporary_files_are_cleaned(tmp_path):
    from obliviate.store import STALE_TMP_SECONDS, clean_stale_tmp
    stale, fresh = tmp_path / "rows" / ".a.json.x.tmp", tmp_path / "rows" / ".b.json.y.tmp"
    stale.parent.mkdir()
    stale.write_text("{")
    fresh.write_text("{")
    old = time.time() - STALE_TMP_SECONDS - 5
    os.utime(stale, (old, old))
    assert clean_stale_tmp(tmp_path) == 1
    assert not stale.exists() and fresh.exists()  # a live write of another process is left alone


def test_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert atomic_write_text(tmp_path / "b.txt", "x").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)


def test_run_names_stay_inside_the_runs_folder():
    from obliviate.errors import ObliviateError
    from obliviate.store import check_run_name
    for bad in ("", "..", "../x", "/abs", "a/b", ".hidden", "x" * 200):
        with pytest.raises(ObliviateError):
            check_run_name(bad)
    assert check_run_name("my-grid_2.v1") == "my-grid_2.v1"
