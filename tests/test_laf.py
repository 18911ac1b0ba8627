"""LAF, Label-Agnostic Forgetting (Shen et al., ICLR 2024): label-free unlearning through representations."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.errors import ObliviateError

FAST = dict(vae_epochs=3, epochs=3, lr_ue=3e-3, lr_ra=3e-3, tau=20.0, batch_size=32)


def test_extractor_unlearning_loss_by_hand():
    from obliviate.vision.methods.laf import extractor_unlearning_loss
    s = lambda v: math.exp(v / (v + 1))
    got = extractor_unlearning_loss(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 0.5, 2.0]))
    assert float(got) == pytest.approx(s(0.0) + s(1.0) - s(3.0) - s(0.5) - s(2.0))  # sums, as in the reference


def test_reconstruction_error_sums_over_dimensions():
    from obliviate.vision.methods.laf import RepresentationVAE
    torch.manual_seed(0)
    vae = RepresentationVAE(torch.zeros(6), torch.full((6,), 2.0), latent=3).eval()
    z = torch.rand(4, 6) * 2
    u = z / 2
    with torch.no_grad():
        recon = vae.decoder(vae.mu(vae.encoder(u)))
        assert torch.allclose(vae.error(z), ((recon - u) ** 2).sum(1))


def test_vae_loss_by_hand():
    from obliviate.vision.methods.laf import RepresentationVAE, vae_loss
    torch.manual_seed(0)
    vae = RepresentationVAE(torch.zeros(5), torch.ones(5), latent=2).eval()  # eval: z = mu, no sampling
    u = torch.rand(3, 5)
    with torch.no_grad():
        h = vae.encoder(u)
        mu, logvar = vae.mu(h).numpy(), vae.logvar(h).numpy()
        recon = vae.decoder(vae.mu(h)).numpy()
        got = float(vae_loss(vae, u, 0.025))
    un = u.numpy()
    want_recon = ((recon - un) ** 2).sum() / 3  # summed over dimensions, averaged over the batch
    want_kl = -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar)).sum() / 3
    assert got == pytest.approx(want_recon + 0.025 * want_kl, rel=1e-5)


def test_vae_keeps_its_latent_dimensions_active(digits_class_task, digits_class_original, loop):
    # with the reference scaling the KL term does not swamp the reconstruction: latent dimensions stay in use
    # (a per-dimension mean of the reconstruction error makes the KL ~dim times stronger and collapses them all)
    from obliviate.vision.methods.laf import LAF, active_dimensions
    reps = loop.predict(digits_class_original.features, digits_class_task.train_eval).flatten(1)
    method = LAF(vae_epochs=10, latent=8)
    vae = method.fit_vae(reps, reps.min(0).values, reps.max(0).values, loop, "test")
    assert active_dimensions(vae, vae.scale(reps)) >= 4


def test_alignment_loss_by_hand():
    from obliviate.vision.methods.laf import alignment_loss
    rng = np.random.default_rng(0)
    zr, zr0, zf, zf0 = (rng.normal(size=(n, 4)) for n in (3, 3, 2, 2))
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    c_r, c_f = 1 - cos(zr, zr0), 1 - cos(zf, zf0)
    want = (c_r - np.log(np.exp(c_f / 7.0).sum())).sum()
    t = lambda a: torch.tensor(a)
    got = alignment_loss(t(zr), t(zr0), t(zf), t(zf0), 7.0)
    assert float(got) == pytest.approx(want, rel=1e-9)
    # pulling a retain embedding onto the original's lowers the loss; so does pushing a forget one away
    pulled, pushed = zr.copy(), zf.copy()
    pulled[0], pushed[0] = zr0[0], -zf0[0]
    assert float(alignment_loss(t(pulled), t(zr0), t(zf), t(zf0), 7.0)) < want
    assert float(alignment_loss(t(zr), t(zr0), t(pushed), t(zf0), 7.0)) < want


def test_hidden_task_refuses_labels(digits_task):
    hidden = digits_task.without_labels()
    with pytest.raises(ObliviateError):
        hidden.labels("retain")
    with pytest.raises(ObliviateError):
        hidden.train_split("forget").y
    assert len(hidden.forget[0]) == 1 and len(hidden.train_split("retain")[0]) == 1


def _cos_distance(a, b):
    return (1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean().item()


def test_laf_runs_without_labels_and_moves_forget_representations(digits_class_task, digits_class_original, loop):
    from obliviate.vision.methods import create
    hidden = digits_class_task.without_labels()
    method = create("laf", **FAST)
    assert method.uses_labels is False
    model = method.unlearn(copy.deepcopy(digits_class_original), hidden, loop).eval()
    feats = {}
    for name, m in (("new", model), ("old", digits_class_original)):
        for split in ("forget", "retain"):
            feats[name, split] = loop.predict(m.features, hidden.split(split))
    moved_forget = _cos_distance(feats["new", "forget"], feats["old", "forget"])
    moved_retain = _cos_distance(feats["new", "retain"], feats["old", "retain"])
    assert moved_forget > 1.4 * moved_retain
    assert torch.equal(model.head.weight, digits_class_original.head.weight)  # the head is never trained by LAF
    # both stages run at every step, the unlearning stage first
    stages = [s for s, _ in method.history_]
    steps = 3 * math.ceil(len(digits_class_task.forget_idx) / 32)
    assert stages == ["unlearn", "align"] * steps


def test_runner_hands_label_free_methods_a_hidden_task(digits_task, digits_original, loop, monkeypatch):
    from obliviate.vision.methods import create
    from obliviate.vision.run import unlearn
    seen = {}
    method = create("laf", **{**FAST, "epochs": 1, "vae_epochs": 1})
    real = type(method).unlearn

    def spy(self, model, task, loop):
        seen["hidden"] = task.labels_hidden
        return real(self, model, task, loop)

    monkeypatch.setattr(type(method), "unlearn", spy)
    unlearn(method, digits_original, digits_task, loop)
    assert seen["hidden"] is True


def test_laf_plus_repair_trains_only_the_head(digits_task, digits_original, loop):
    from obliviate.vision.methods import create
    loop.seed(0)
    laf = create("laf", **{**FAST, "epochs": 1}).unlearn(copy.deepcopy(digits_original), digits_task.without_labels(),
                                                         loop)
    method = create("laf+r", **{**FAST, "epochs": 1}, head_epochs=2)
    assert method.uses_labels
    loop.seed(0)
    model = method.unlearn(copy.deepcopy(digits_original), digits_task, loop)
    # the same label-free stage, then only the head moves
    for (name, a), b in zip(model.features.state_dict().items(), laf.features.state_dict().values()):
        assert torch.equal(a, b), f"the repair changed the extractor ({name})"
    assert not torch.equal(model.head.weight, laf.head.weight)


class _Custom(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.backbone, self.classifier = base.features, base.head

    def forward(self, x):
        return self.classifier(self.backbone(x))


def test_custom_models_name_or_pass_their_split(digits_task, digits_original, loop):
    from obliviate.vision.methods import create
    custom = _Custom(copy.deepcopy(digits_original))
    with pytest.raises(ObliviateError):
        create("laf").parts(custom)
    with pytest.raises(ObliviateError):
        create("laf", extractor="backbone")
    named = create("laf", extractor="backbone", head="classifier")
    assert named.parts(custom) == (custom.backbone, custom.classifier)
    passed = create("laf", split=lambda m: (m.backbone, m.classifier), **{**FAST, "epochs": 1, "vae_epochs": 1})
    passed.unlearn(custom, digits_task.without_labels(), loop)
    assert isinstance(passed.params()["split"], str)
