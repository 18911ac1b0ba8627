"""DP2Unlearning: DP-SGD accounting against Opacus's accountant, retain-only unlearning, LoRA, the dp-base command."""
import copy

import pytest
import torch

pytest.importorskip("opacus", reason="the dp extra is not installed")

from obliviate.errors import ObliviateError  # noqa: E402
from obliviate.loop import Loop  # noqa: E402
from obliviate.text.methods import UnlearnData, create  # noqa: E402
from obliviate.text.train import LMDataset, encode  # noqa: E402

FORGET = [("Question: Where was Ada born?\nAnswer:", " Ada was born in Lisbon."),
          ("Question: Where was Bo born?\nAnswer:", " Bo was born in Hanoi.")] * 2
RETAIN = [("Question: What does Ed write?\nAnswer:", " Ed writes crime fiction."),
          ("Question: What does Flo write?\nAnswer:", " Flo writes poetry.")] * 4
SMALL = {"dp_epochs": 2, "dp_batch_size": 4, "epochs": 1, "batch_size": 4, "epsilon": 8.0}


class ForgetGuard(LMDataset):
    """The forget set's tensors (hashing them is allowed) behind a loader that raises when an example is read."""

    def __init__(self, forget: LMDataset):
        super().__init__(forget.input_ids, forget.attention_mask, forget.labels)
        self.armed = False

    def __getitems__(self, indices):
        if self.armed:
            raise AssertionError(f"forget examples {indices} were read after the DP base was built")
        return super().__getitems__(indices)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from obliviate.text.models import build_tokenizer, tiny_causal_lm
    with pytest.MonkeyPatch.context() as mp:  # the session's cache (conftest), before its per-test fixture runs
        mp.setenv("OBLIVIATE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        tok = build_tokenizer([p + c for p, c in FORGET + RETAIN] * 3, vocab_size=300)
        model = tiny_causal_lm(tok, n_layer=1, n_embd=16, n_head=2, n_positions=48, seed=0)
        data = UnlearnData(forget=ForgetGuard(encode(tok, FORGET, 48)), retain=encode(tok, RETAIN, 48),
                           tokenizer=tok, seed=0)
        loop = Loop(cpu=True, progress=False)
        base, privacy, _ = create("dp2u", **SMALL).base(model, data, loop)
        yield model, tok, data, loop, base, privacy


def test_privacy_spent_matches_opacus_accountant_for_the_recorded_steps(setup):
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier
    *_, privacy = setup
    n = len(FORGET) + len(RETAIN)
    assert privacy["sample_rate"] == pytest.approx(SMALL["dp_batch_size"] / n)
    assert privacy["steps"] == SMALL["dp_epochs"] * round(1 / privacy["sample_rate"])
    accountant = RDPAccountant()
    accountant.history = [(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    assert privacy["epsilon"] == pytest.approx(accountant.get_epsilon(privacy["delta"]), rel=1e-9)
    assert privacy["epsilon"] <= SMALL["epsilon"] + 1e-6
    sigma = get_noise_multiplier(target_epsilon=SMALL["epsilon"], target_delta=1e-5,
                                 sample_rate=privacy["sample_rate"], epochs=SMALL["dp_epochs"], accountant="rdp")
    assert privacy["noise_multiplier"] == pytest.approx(sigma)


def test_unlearning_reads_only_the_retain_set_and_starts_from_the_cached_dp_base(setup):
    model, tok, data, loop, base, privacy = setup
    data.forget.armed = True
    try:
        method = create("dp2u", **SMALL)
        cached, again, _ = method.base(model, data, loop)  # from the cache: no training, no forget example read
        assert all(torch.equal(a, b) for a, b in zip(cached.state_dict().values(), base.state_dict().values()))
        assert again == privacy
        out = method.unlearn(copy.deepcopy(model), data, loop)
    finally:
        data.forget.armed = False
    report = out.extra_metrics(None, tok)
    assert report["dp_epsilon"] == privacy["epsilon"] and report["dp_unlearn_seconds"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(out.state_dict().values(), base.state_dict().values()))
    # the guard does fire when the forget set is read
    data.forget.armed = True
    with pytest.raises(AssertionError, match="were read"):
        data.forget.__getitems__([0])
    data.forget.armed = False


def test_dp2u_with_lora_trains_adapters_on_the_dp_base(setup):
    from obliviate.text.run import unlearn_once
    from obliviate.text.train import Recipe
    from obliviate.text.data.tasks import LMTask
    model, tok, data, loop, base, _ = setup
    task = LMTask("toy", "forget", 0, FORGET, RETAIN, RETAIN[:1])
    out, info = unlearn_once("dp2u", SMALL, model, tok, task, loop, Recipe(max_length=48), lora=2)
    assert not hasattr(out, "peft_config") and "dp_epsilon" in out.extra_metrics(None, tok)
    changed = [k for k, v in out.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed and all(("attn" in k or "mlp" in k) for k in changed)  # only the LoRA targets moved


def test_bad_privacy_settings_are_refused():
    for bad in ({"epsilon": 0}, {"delta": 1.5}, {"accountant": "gdp2"}, {"max_grad_norm": -1}):
        with pytest.raises(ObliviateError, match="dp"):
            create("dp2u", **bad)


def test_dp_base_command_reports_the_base_and_the_deployed_model_apart(tmp_path, capsys):
    import json

    from obliviate.cli import main
    argv = ["lm", "dp-base", "--runs", str(tmp_path), "--no-progress", "--json", "--eval-limit", "4", "--threads", "1",
            "--set", "task.n_authors=4", "--set", "task.n_holdout=1", "--set", "model.n_embd=32",
            "--set", "recipe.epochs=3", "--set", "dp2u.dp_epochs=1", "--set", "dp2u.dp_batch_size=16"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert 0 < first["privacy"]["epsilon"] <= 8.0 + 1e-6 and first["privacy"]["epochs"] == 1
    # the deployed model is fine-tuned from a copy: the DP base's own metrics are reported, not the deployed one's
    assert first["dp_base"] != first["dp_deployed"]
    assert main(argv) == 0  # from the cache: the same report
    second = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in second.items() if "seconds" not in k} == \
        {k: v for k, v in first.items() if "seconds" not in k}
