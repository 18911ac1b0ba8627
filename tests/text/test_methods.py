"""Defining properties of the language-model unlearning methods, on a tiny GPT-2 and a hand-made batch."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from obliviate.errors import ObliviateError
from obliviate.text.methods import METHODS, create
from obliviate.text.methods.base import retain_kl
from obliviate.text.methods.npo import npo_loss
from obliviate.text.train import IGNORE, encode, nll, per_process_batch, sequence_logprob

FORGET = [("Question: Where was Ada born?\nAnswer:", " Ada was born in Lisbon."),
          ("Question: Where was Bo born?\nAnswer:", " Bo was born in Hanoi."),
          ("Question: Where was Cy born?\nAnswer:", " Cy was born in Quito."),
          ("Question: Where was Di born?\nAnswer:", " Di was born in Cork.")]
RETAIN = [("Question: What does Ed write?\nAnswer:", " Ed writes crime fiction."),
          ("Question: What does Flo write?\nAnswer:", " Flo writes poetry."),
          ("Question: What does Gus write?\nAnswer:", " Gus writes fantasy novels."),
          ("Question: What does Hal write?\nAnswer:", " Hal writes satire.")]

# the fixtures lm (a tiny untrained GPT-2 on these pairs), data and loop: tests/text/conftest.py, tests/conftest.py


def perturbed(model, scale=0.05, seed=1):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other.eval()


def manual_seq_logprob(model, ds):
    """Sum of log p(token) over each completion, one position at a time (independent of the vectorised code)."""
    out = []
    with torch.no_grad():
        for ids, mask, labels in zip(ds.input_ids, ds.attention_mask, ds.labels):
            n = int(mask.sum())
            logits = model(input_ids=ids[None, :n]).logits[0]
            total = 0.0
            for t in range(1, n):
                if labels[t] != IGNORE:
                    total += torch.log_softmax(logits[t - 1].double(), -1)[labels[t]].item()
            out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_registry_holds_every_method_with_paper_and_defaults():
    assert set(METHODS.names()) >= {"ga", "graddiff", "kl-retain", "npo", "npo-gdr", "npo-klr", "simnpo", "rmu",
                                    "task-vector"}
    for name, cls in METHODS.items():
        assert cls.paper and "arXiv" in cls.paper and cls.__doc__
    assert create("npo").beta == 0.1
    assert (create("simnpo").beta, create("simnpo").delta, create("simnpo").gamma) == (4.5, 0.0, 0.125)
    with pytest.raises(ObliviateError, match="no hyperparameter"):
        create("npo", betta=1)
    with pytest.raises(ObliviateError, match="beta must be positive"):
        create("npo", beta=0)


def test_sequence_logprob_matches_a_token_by_token_computation(lm, data):
    model, _ = lm
    ds = data.forget
    with torch.no_grad():
        got = sequence_logprob(model, ds.input_ids, ds.attention_mask, ds.labels).double()
    assert torch.allclose(got, manual_seq_logprob(model, ds), atol=1e-4)


def test_npo_loss_equals_its_formula_on_a_known_batch(lm, data):
    model, _ = lm
    reference = perturbed(model)
    beta = 0.1
    lp, lp_ref = manual_seq_logprob(model, data.forget), manual_seq_logprob(reference, data.forget)
    expected = -(2 / beta) * torch.mean(torch.log(1 / (1 + torch.exp(beta * (lp - lp_ref)))))
    ds = data.forget
    with torch.no_grad():
        got = create("npo", beta=beta).forget_loss(model, (ds.input_ids, ds.attention_mask, ds.labels), reference)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_npo_tends_to_gradient_ascent_as_beta_goes_to_zero(lm, data):
    """lim_{beta->0} [L_NPO - (2/beta) log 2] = mean_i (log p_theta(y_i|x_i) - log p_ref(y_i|x_i)), so the gradient of
    L_NPO tends to grad mean_i log p_theta(y_i|x_i) = |y| * grad L_GA when every completion has |y| tokens (GA's loss
    is the token-mean log-likelihood; NPO reads whole-sequence log-likelihoods)."""
    model, tok = lm
    ds = encode(tok, [(p, " born in Lisbon.") for p, _ in FORGET], 64)  # one completion: equal lengths
    lengths = (ds.labels[:, 1:] != IGNORE).sum(1)
    assert (lengths == lengths[0]).all()
    batch = (ds.input_ids, ds.attention_mask, ds.labels)
    n_tokens = int(lengths[0])
    work, reference = copy.deepcopy(model).train(), perturbed(model)
    for m in (work, reference):
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    beta = 1e-4
    npo = create("npo", beta=beta)
    loss = npo.forget_loss(work, batch, reference)
    with torch.no_grad():
        gap = (sequence_logprob(work, *batch) - sequence_logprob(reference, *batch)).mean()
    assert (loss - 2 / beta * math.log(2)).item() == pytest.approx(gap.item(), abs=1e-2)
    g_npo = grads(work, npo.forget_loss(work, batch, reference))
    g_ga = grads(work, create("ga").forget_loss(work, batch, None))
    for name in g_ga:
        assert torch.allclose(g_npo[name], n_tokens * g_ga[name], rtol=1e-3, atol=1e-5), name
    # away from the limit NPO reweights: for log p_theta - log p_ref = 29 and beta 0.1 the loss is the formula's value
    x = 29.0
    assert npo_loss(torch.tensor([-1.0]), torch.tensor([-30.0]), 0.1).item() == pytest.approx(
        -(2 / 0.1) * math.log(1 / (1 + math.exp(0.1 * x))), rel=1e-6)


def test_graddiff_gradient_is_ga_gradient_plus_retain_nll_gradient(lm, data):
    model, _ = lm
    work = copy.deepcopy(model).train()
    for mod in work.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    f, r = data.forget, data.retain
    fb, rb = (f.input_ids, f.attention_mask, f.labels), (r.input_ids, r.attention_mask, r.labels)
    g_total = grads(work, create("graddiff").loss(work, (*fb, *rb), None))
    g_ga = grads(work, create("ga").forget_loss(work, fb, None))
    g_r = grads(work, nll(work, *rb))
    for name in g_total:
        assert torch.allclose(g_total[name], g_ga[name] + g_r[name], atol=1e-6), name


def test_kl_retain_is_zero_at_the_reference_and_matches_torch_kl(lm, data):
    model, _ = lm
    r = data.retain
    batch = (r.input_ids, r.attention_mask, r.labels)
    with torch.no_grad():
        assert retain_kl(model, batch, copy.deepcopy(model)).item() == pytest.approx(0.0, abs=1e-6)
        other = perturbed(model, 0.2)
        got = retain_kl(other, batch, model).item()
        logits_p = other(input_ids=r.input_ids, attention_mask=r.attention_mask).logits[:, :-1]
        logits_q = model(input_ids=r.input_ids, attention_mask=r.attention_mask).logits[:, :-1]
        per_token = F.kl_div(torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1), log_target=True,
                             reduction="none").sum(-1)
        valid = r.labels[:, 1:] != IGNORE
        expected = per_token[valid].mean().item()
    assert got > 1e-4 and got == pytest.approx(expected, rel=1e-4)


def test_npo_variants_add_only_their_retain_term(lm, data):
    model, _ = lm
    reference = perturbed(model)
    f, r = data.forget, data.retain
    fb, rb = (f.input_ids, f.attention_mask, f.labels), (r.input_ids, r.attention_mask, r.labels)
    with torch.no_grad():
        base = create("npo").forget_loss(model, fb, reference)
        gdr = create("npo-gdr", alpha=0.5).loss(model, (*fb, *rb), reference)
        klr = create("npo-klr", alpha=2.0).loss(model, (*fb, *rb), reference)
        assert gdr.item() == pytest.approx(base.item() + 0.5 * nll(model, *rb).item(), rel=1e-5)
        assert klr.item() == pytest.approx(base.item() + 2.0 * retain_kl(model, rb, reference).item(), rel=1e-5)
    assert not create("npo").uses_retain() and create("npo-gdr").uses_retain()


@pytest.mark.parametrize("delta", [0.0, 0.7])
def test_simnpo_loss_formula(lm, data, delta):
    model, _ = lm
    f = data.forget
    beta = 4.5
    lp = manual_seq_logprob(model, f)
    lengths = (f.labels[:, 1:] != IGNORE).sum(1).double()
    expected = -(2 / beta) * torch.log(torch.sigmoid(beta * (-lp / lengths - delta))).mean()
    with torch.no_grad():
        got = create("simnpo", delta=delta).forget_loss(model, (f.input_ids, f.attention_mask, f.labels), None)
        total = create("simnpo", delta=delta).loss(model, (f.input_ids, f.attention_mask, f.labels,
                                                           data.retain.input_ids, data.retain.attention_mask,
                                                           data.retain.labels), None)
        retain = nll(model, data.retain.input_ids, data.retain.attention_mask, data.retain.labels)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    assert total.item() == pytest.approx(0.125 * got.item() + retain.item(), rel=1e-5)


def test_gradient_ascent_raises_the_forget_nll(lm, data, loop):
    model, _ = lm
    f = data.forget
    before = nll(model, f.input_ids, f.attention_mask, f.labels).item()
    out = create("ga", lr=1e-3, epochs=3, batch_size=2).unlearn(copy.deepcopy(model), data, loop)
    with torch.no_grad():
        after = nll(out.eval(), f.input_ids, f.attention_mask, f.labels).item()
    assert after > before + 0.1


def test_gradient_ascent_is_the_token_mean_over_the_batch_with_unequal_lengths(lm, data):
    """GA's loss is minus the NLL averaged over all completion tokens of the batch, not over sequences."""
    model, _ = lm
    f = data.forget
    lengths = (f.labels[:, 1:] != IGNORE).sum(1)
    assert len(set(lengths.tolist())) > 1  # unequal lengths: the two averages differ
    sums = manual_seq_logprob(model, f)
    with torch.no_grad():
        got = create("ga").forget_loss(model, (f.input_ids, f.attention_mask, f.labels), None).item()
    assert got == pytest.approx((sums.sum() / lengths.sum()).item(), rel=1e-5)
    assert got != pytest.approx((sums / lengths).mean().item(), rel=1e-4)


def _finetuned_on_forget(model, data, loop, lr, epochs, batch_size):
    """theta_ft: the target fine-tuned on the forget set, written out independently of the method."""
    from obliviate.text.train import Paired, without_dropout
    tuned = copy.deepcopy(model)
    loader = loop.loader(Paired(data.forget, None), batch_size, shuffle=True, seed=data.seed)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr, weight_decay=0.0)
    with without_dropout(tuned):
        return loop.fit(tuned, optimizer, loader, lambda m, b: nll(m, *b), epochs)


def test_task_vector_subtracts_scale_times_the_forget_task_vector(lm, data, loop):
    model, _ = lm
    assert create("task-vector").scale == 5.0  # MUSE's scripts
    tuned = _finetuned_on_forget(model, data, loop, lr=1e-3, epochs=1, batch_size=2)
    out = create("task-vector", lr=1e-3, epochs=1, batch_size=2).unlearn(copy.deepcopy(model), data, loop)
    theta, theta_ft, got = model.state_dict(), tuned.state_dict(), out.state_dict()
    moved = max((theta_ft[k] - theta[k]).abs().max().item() for k in theta)
    assert moved > 1e-3
    for k in theta:
        assert torch.allclose(got[k], theta[k] - 5.0 * (theta_ft[k] - theta[k]), atol=1e-6), k
    f = data.forget
    batch = (f.input_ids, f.attention_mask, f.labels)
    with torch.no_grad():  # moving away from the forget fine-tuning raises the forget NLL
        assert nll(out.eval(), *batch).item() > nll(model, *batch).item()
    same = create("task-vector", scale=0.0, lr=1e-2, epochs=1, batch_size=2).unlearn(copy.deepcopy(model), data, loop)
    for (n, a), b in zip(model.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), n


def test_rmu_loss_is_the_papers_formula_on_answer_tokens(lm, data):
    from obliviate.text.methods.rmu import rmu_loss
    model, _ = lm
    frozen, work = model, perturbed(model, 0.05, seed=4)
    method = create("rmu", layer=1, update_layers="1", steering_coeff=6.5, alpha=3.0)
    control = method.control_vector(work.config.hidden_size)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(work.config.hidden_size, generator=g)
    assert torch.allclose(control, 6.5 * u / u.norm())  # c * u, u a fixed random unit vector
    f, r = data.forget, data.retain

    def hidden(m, ds):
        out = m(input_ids=ds.input_ids, attention_mask=ds.attention_mask, output_hidden_states=True)
        return out.hidden_states[2]  # the output of layer 1

    def mse(h, target, labels):
        rows = (labels != IGNORE)  # answer tokens only: prompts and padding are left alone
        return ((h - target) ** 2)[rows].mean()

    with torch.no_grad():
        expected = mse(hidden(work, f), 6.5 * u / u.norm(), f.labels) + \
            3.0 * mse(hidden(work, r), hidden(frozen, r), r.labels)
        got = rmu_loss(work, frozen, (f.input_ids, f.attention_mask, f.labels, r.input_ids, r.attention_mask,
                                      r.labels), 1, control, 3.0)
        retain_part = mse(hidden(work, r), hidden(frozen, r), r.labels)
    assert retain_part > 1e-6
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_rmu_changes_only_the_chosen_layers_mlp(lm, data, loop):
    model, _ = lm
    out = create("rmu", layer=1, update_layers="1", steering_coeff=5.0, alpha=10.0, lr=1e-2,
                 batch_size=2).unlearn(copy.deepcopy(model), data, loop)
    before, after = dict(model.named_parameters()), dict(out.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(".h.1.mlp." in n for n in changed)
    assert {n for n in before if ".h.1.mlp." in n} == changed
    assert all(p.requires_grad for p in out.parameters())  # trainability restored for later use
    with pytest.raises(ObliviateError, match="must lie in"):
        create("rmu").unlearn(copy.deepcopy(model), data, loop)  # the paper's layer 7 does not exist in 2 layers


def test_retain_examples_are_drawn_at_random_per_access_and_reproducibly(lm):
    from obliviate.text.train import Paired
    _, tok = lm
    forget = encode(tok, FORGET[:2], 64)
    retain = encode(tok, [(f"Question: q{i}?\nAnswer:", f" a{i}") for i in range(12)], 64)
    pairs = Paired(forget, retain, seed=5)
    seen = []
    for epoch in range(30):
        pairs.set_epoch(epoch)
        batch = pairs.__getitems__([0, 1])
        seen += [tuple(row.tolist()) for row in batch[3]]
    assert len(set(seen)) >= 10  # far more than |forget| = 2 fixed partners: most of the retain set is seen
    again = Paired(forget, retain, seed=5)
    again.set_epoch(29)
    assert torch.equal(again.__getitems__([0, 1])[3], batch[3])  # the same draw for the same (seed, epoch)
    assert torch.equal(again.__getitems__([1])[3][0], batch[3][1])  # independent of which indices share a batch


def test_batches_split_evenly_over_processes(loop):
    assert per_process_batch(8, loop) == 8 // loop.num_processes
    with pytest.raises(ObliviateError, match="positive multiple"):
        per_process_batch(0, loop)


def test_npo_with_cached_reference_logprobs_equals_npo_with_a_reference_forward_per_step(lm, data, loop):
    from dataclasses import dataclass

    from obliviate.text.methods.npo import NPO

    @dataclass
    class PerStepNPO(NPO):
        caches_reference_logprob = False

    model, _ = lm
    start = perturbed(model, 0.02, seed=3)
    for mod in start.modules():  # dropout would draw different masks in the two runs
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    cached = create("npo", lr=1e-3, epochs=2, batch_size=2).unlearn(copy.deepcopy(start), data, loop)
    per_step = PerStepNPO(lr=1e-3, epochs=2, batch_size=2).unlearn(copy.deepcopy(start), data, loop)
    moved = max((a - b).abs().max().item() for a, b in zip(start.state_dict().values(), cached.state_dict().values()))
    assert moved > 1e-4
    for (n, a), b in zip(cached.state_dict().items(), per_step.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), n
