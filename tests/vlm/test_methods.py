import pytest
import torch
import torch.nn.functional as F

from obliviate.errors import ObliviateError
from obliviate.vlm.losses import domain_mmd2, uniform_target_loss
from obliviate.vlm.methods import METHODS, create

FAST = dict(epochs=3, lr=0.5, batch_size=64, warmup_epochs=0, n_prompts=2)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def objective(model, task):
    with torch.no_grad():
        logits = model(task.train.images)
    f = task.train.forget
    return F.cross_entropy(logits[~f], task.train.labels[~f]).item(), uniform_target_loss(logits[f]).item()


@pytest.mark.parametrize("name", ["domain-baseline", "adu"])
def test_backbone_byte_identical_and_objective_improves(name, clip, task, loop):
    before = snapshot(clip)
    model = create(name, **FAST).unlearn(clip, task, loop)
    after = snapshot(clip)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)     # frozen backbone unchanged, bit for bit
    assert all(not p.requires_grad for p in clip.parameters())
    from obliviate.vlm.evaluate import zero_shot
    mem0, forget0 = objective(zero_shot(clip, task), task)
    mem1, forget1 = objective(model, task)
    assert mem1 + forget1 < mem0 + forget0   # L_memorize + L_forget decreased on the few-shot set


def test_adu_trains_only_prompts_instapg_and_domain_classifier(clip, task):
    m = create("adu", **FAST)
    t = m.build(clip, task)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in t.named_parameters() if p.requires_grad}
    assert trainable == {"prompted.visual_prompts", "prompted.instapg", "helpers.domain_classifier"}
    off = create("adu", instapg=False, ddl_ce=False, ddl_mmd=False, **FAST).build(clip, task)
    assert off.prompted.instapg is None and len(off.helpers) == 0


def test_adu_domain_disentangling_loss_formula(clip, task):
    m = create("adu", gamma=3.0, lambda_mmd=2.0, **FAST)
    t = m.build(clip, task)
    batch = task.train.__getitems__(list(range(0, len(task.train), 5)))
    x, y, d, f = batch
    features = t.prompted.image_features(x)
    logits = t.prompted.logits(features)
    expected = 3.0 * F.cross_entropy(t.helpers["domain_classifier"](features), d) - 2.0 * domain_mmd2(features, d)
    torch.testing.assert_close(m.extra_loss(t, features, logits, batch), expected)
    total = F.cross_entropy(logits[~f], y[~f]) + uniform_target_loss(logits[f]) + expected
    torch.testing.assert_close(m.loss(t, batch), total)
    mmd_only = create("adu", ddl_ce=False, lambda_mmd=2.0, **FAST)
    torch.testing.assert_close(mmd_only.extra_loss(t, features, logits, batch), -2.0 * domain_mmd2(features, d))


def test_same_seed_same_result(clip, task, loop):
    a = create("adu", **{**FAST, "epochs": 1}).unlearn(clip, task, loop)
    b = create("adu", **{**FAST, "epochs": 1}).unlearn(clip, task, loop)
    assert torch.equal(a.visual_prompts, b.visual_prompts)


def test_bbf_is_gradient_free_and_improves_its_objective(clip, class_task, loop):
    from obliviate.vlm.evaluate import zero_shot
    passes = loop.samples_trained
    with torch.no_grad():   # black-box: it must work without any gradient
        model = create("bbf", iterations=4, popsize=6).unlearn(clip, class_task, loop)
    assert loop.samples_trained == passes   # no training step ran
    mem0, f0 = objective(zero_shot(clip, class_task), class_task)
    mem1, f1 = objective(model, class_task)
    assert mem1 + f1 <= mem0 + f0 + 1e-6
    assert model.text_context.abs().sum() > 0


def test_forget_kinds_checked(clip, task, class_task, loop):
    with pytest.raises(ObliviateError, match="forgets domains, not classes"):
        create("adu", **FAST).unlearn(clip, class_task, loop)


def test_registry_and_bad_hyperparameters():
    assert {"adu", "domain-baseline", "bbf"} <= set(METHODS.names())
    with pytest.raises(ObliviateError, match="no hyperparameter"):
        create("adu", alpha=1)
    with pytest.raises(ObliviateError, match="non-negative"):
        create("adu", gamma=-1.0)
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert "arXiv" in cls.paper and cls.__doc__
