"""l1-sparse unlearning and prune-first-then-unlearn (Jia et al., NeurIPS 2023)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from obliviate.errors import ObliviateError


def test_l1_schedule_decays_linearly_to_zero(digits_task, digits_original, loop):
    from obliviate.vision.methods import create
    method = create("l1-sparse", alpha=0.3, epochs=4, batch_size=512)
    method.unlearn(copy.deepcopy(digits_original), digits_task, loop)
    assert method.history_ == pytest.approx([0.3, 0.225, 0.15, 0.075], abs=1e-15)
    assert [method.gamma(t) for t in range(5)] == pytest.approx([0.3, 0.225, 0.15, 0.075, 0.0], abs=1e-15)


def test_l1_sparse_trains_with_the_decaying_penalty(digits_task, digits_original, loop):
    # full-batch epochs, so data order does not matter: an independent loop with gamma_t = alpha (1 - t / E)
    from obliviate.vision.methods import create
    alpha, epochs, lr = 0.02, 3, 0.05
    loop.seed(0)
    got = create("l1-sparse", alpha=alpha, epochs=epochs, lr=lr, batch_size=4096).unlearn(
        copy.deepcopy(digits_original), digits_task, loop)
    ref = copy.deepcopy(digits_original).train()
    x, y = zip(*(digits_task.retain[i] for i in range(len(digits_task.retain_idx))))
    x, y = torch.stack(x), torch.stack(y)
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for t in range(epochs):
        opt.zero_grad()
        loss = F.cross_entropy(ref(x), y) + alpha * (1 - t / epochs) * sum(p.abs().sum() for p in ref.parameters())
        loss.backward()
        opt.step()
    for (name, a), b in zip(got.named_parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_l1_loss_is_cross_entropy_plus_weighted_l1_norm(digits_task, digits_original):
    from obliviate.vision.methods import create
    method = create("l1-sparse")
    x = torch.stack([digits_task.retain[i][0] for i in range(8)])
    y = torch.stack([digits_task.retain[i][1] for i in range(8)])
    model = copy.deepcopy(digits_original)
    with torch.no_grad():
        got = method.loss(model, (x, y), 0.01)
        norm = sum(float(np.abs(p.detach().numpy()).sum()) for p in model.parameters())
        want = F.cross_entropy(model(x), y) + 0.01 * norm
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def _layer_weights(model):
    from obliviate.vision.prune import prunable, refresh
    refresh(model)
    return [m.weight.detach().clone() for m, _ in prunable(model)]


def test_global_pruning_reaches_the_requested_sparsity(digits_original):
    from obliviate.vision.prune import PruneConfig, prune_global, sparsity
    model = prune_global(copy.deepcopy(digits_original), 0.9)
    total = sum(w.numel() for w in _layer_weights(model))
    assert abs(sparsity(model) - 0.9) <= 1.0 / total
    prune_global(model, 0.5)  # a second round prunes half of what is left
    assert abs(sparsity(model) - 0.95) <= 2.0 / total
    # global, by magnitude: every surviving weight is at least as large as every pruned one (original values)
    dense = torch.cat([w.flatten() for w in _layer_weights(digits_original)]).abs()
    kept = torch.cat([m.flatten() for m in _masks_of(model)]).bool()
    assert dense[kept].min() >= dense[~kept].max()
    cfg = PruneConfig(0.95, rounds=3)
    assert 1 - (1 - cfg.rate_per_round) ** 3 == pytest.approx(0.95)
    with pytest.raises(ObliviateError):
        PruneConfig(1.2)


def _masks_of(model):
    from obliviate.vision.prune import masks
    return list(masks(model).values())


@pytest.mark.parametrize("name", ["finetune", "lotus", "l1-sparse"])
def test_mask_stays_in_force_through_unlearning(name, digits_task, digits_original, loop):
    from obliviate.vision.methods import METHODS, create
    from obliviate.vision.prune import prune_global, sparsity
    from obliviate.vision.run import unlearn
    if name not in METHODS:
        pytest.skip(f"{name} is not registered")
    pruned = prune_global(copy.deepcopy(digits_original), 0.8)
    masks = _masks_of(pruned)
    before = sparsity(pruned)
    model, _ = unlearn(create(name, epochs=1, lr=0.05), pruned, digits_task, loop)
    weights = _layer_weights(model)
    for w, m in zip(weights, masks):
        assert torch.all(w[m == 0] == 0)  # exactly zero, not small
    changed = any(not torch.equal(a, b) for a, b in zip(weights, _layer_weights(pruned)))
    assert changed and sparsity(model) >= before


def test_pruned_checkpoint_round_trip(tmp_path, digits_task, digits_original):
    from obliviate.store import save_checkpoint
    from obliviate.vision.models import make_model
    from obliviate.vision.prune import load_pruned, prune_global
    pruned = prune_global(copy.deepcopy(digits_original), 0.7)
    x = torch.stack([digits_task.forget[i][0] for i in range(16)])
    pruned.train()
    pruned(x).sum().backward()  # a forward with gradients must not stop copies
    copy.deepcopy(pruned)
    pruned.eval()
    path = save_checkpoint(pruned, tmp_path / "pruned.safetensors")
    fresh = load_pruned(make_model("cnn", digits_task, width=16), path).eval()
    for a, b in zip(_masks_of(pruned), _masks_of(fresh)):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(pruned(x), fresh(x))


def test_pruned_references_share_the_mask_and_are_cached(digits_task, loop):
    from obliviate.store import ModelCache
    from obliviate.vision.prune import PruneConfig, masks, pruned_references, sparsity
    from obliviate.vision.train import Recipe
    recipe = Recipe(epochs=2, batch_size=128)
    cfg = PruneConfig(0.8, rounds=2)
    cache = ModelCache()
    orig, _, gold, _ = pruned_references(digits_task, "cnn", recipe, cfg, loop, cache, {"width": 8})
    assert sparsity(orig) == pytest.approx(0.8, abs=0.01)
    for a, b in zip(masks(orig).values(), masks(gold).values()):
        assert torch.equal(a, b)
    n_files = len(list(cache.root.glob("*.safetensors")))
    orig2, _, gold2, _ = pruned_references(digits_task, "cnn", recipe, cfg, loop, cache, {"width": 8})
    assert len(list(cache.root.glob("*.safetensors"))) == n_files  # all from the cache
    for a, b in zip(orig.state_dict().values(), orig2.state_dict().values()):
        assert torch.equal(a, b)


def test_imp_rewinds_the_surviving_weights_before_each_round(digits_task, loop, monkeypatch):
    # every pruning round starts from the rewind-point weights (masked), not from the previous round's trained ones
    import obliviate.vision.train as train_mod
    from obliviate.store import ModelCache
    from obliviate.vision.prune import PruneConfig, _early_weights, pruned_references
    from obliviate.vision.train import Recipe
    recipe = Recipe(epochs=2, batch_size=128)
    started = []
    real = train_mod.train_reference

    def spy(role, task, model_name, recipe, loop, cache=None, model_kwargs=None, extra_key=None, prepare=None):
        if prepare is not None and role == "original":
            def recording(m):
                m = prepare(m)
                started.append({k: v.detach().clone() for k, v in m.state_dict().items()})
                return m
            return real(role, task, model_name, recipe, loop, cache, model_kwargs, extra_key, recording)
        return real(role, task, model_name, recipe, loop, cache, model_kwargs, extra_key, prepare)

    monkeypatch.setattr(train_mod, "train_reference", spy)
    pruned_references(digits_task, "cnn", recipe, PruneConfig(0.8, rounds=2, rewind_epoch=1), loop, ModelCache(),
                      {"width": 8})
    rewind = _early_weights(digits_task, "cnn", recipe, loop, {"width": 8}, 1)
    assert len(started) == 2
    for state in started:
        for k, v in state.items():
            if k.endswith("weight_orig"):
                assert torch.equal(v, rewind[k[: -len("_orig")]]), k


def test_pruning_touches_convolutions_only(digits_original):
    from obliviate.vision.prune import prune_global
    model = prune_global(copy.deepcopy(digits_original), 0.9)
    assert not hasattr(model.head, "weight_mask")
    assert torch.equal(model.head.weight, digits_original.head.weight)
    assert all(isinstance(m, torch.nn.Conv2d) for m in model.modules() if hasattr(m, "weight_mask"))


def test_pruned_rows_have_their_own_run_ids():
    from obliviate.grid import make_plan, GridOptions
    from obliviate.vision.family import VisionFamily
    opts = GridOptions(methods=["finetune"], forgets=["random:0.1"])
    ids = {make_plan(VisionFamily(dataset="digits", prune=p, prune_rounds=r), opts).cells[0].jobs[-1].run_id
           for p, r in ((None, 1), (0.95, 1), (0.95, 3))}
    assert len(ids) == 3