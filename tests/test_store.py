"""Run store, checkpoints, model cache, and the guards that stop bad runs before they do harm."""
import copy
import json
import os

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
