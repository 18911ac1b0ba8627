"""Scoring and generation against brute-force per-sequence forward passes on tiny causal LMs, and the evaluation
entry points against the metrics they are built from."""
import numpy as np
import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.text.eval import metrics as M
from obliviate.text.eval.evaluate import few_shot_prompt, muse_eval, qa_prompt, qa_target, tofu_eval
from obliviate.text.models import build_tokenizer, tiny_causal_lm
from obliviate.text.eval.scoring import (answer_logprobs, answer_scores, answer_token_stats, greedy_generate,
                                    text_logprobs, text_token_stats)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: Who wrote the letter?\nAnswer: Mara Quell, in the spring.",
    "To be, or not to be, that is the question.",
    "A rose by any other name would smell as sweet.",
    "All the world's a stage, and all the men and women merely players.",
]
TEXTS = ["Hi", "The quick brown fox jumps over the lazy dog and the cat.", "To be or not", "A rose, a rose."]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(CORPUS * 4, vocab_size=320)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request, tok):
    return tiny_causal_lm(tok, request.param, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=3)


def _brute_logprobs(model, ids):
    """log p(. | prefix) of one unpadded sequence, float64: (len - 1, vocab)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    return torch.log_softmax(logits, -1)


def test_text_logprobs_batched_equals_one_by_one_and_brute_force(model, tok):
    batched = text_logprobs(model, tok, TEXTS, batch_size=4)
    for text, got in zip(TEXTS, batched):
        ids = tok(text)["input_ids"]
        want = _brute_logprobs(model, ids).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()
        assert got.shape == (len(ids) - 1,)
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(text_logprobs(model, tok, [text], batch_size=1)[0], got, atol=1e-5)


def test_text_logprobs_truncates_to_max_length(model, tok):
    full = text_logprobs(model, tok, [TEXTS[1]])[0]
    cut = text_logprobs(model, tok, [TEXTS[1]], max_length=5)[0]
    np.testing.assert_allclose(cut, full[:4], atol=1e-5)


def test_token_stats_are_moments_of_the_next_token_distribution(model, tok):
    stats = text_token_stats(model, tok, TEXTS, batch_size=3)
    for text, s in zip(TEXTS, stats):
        logp = _brute_logprobs(model, tok(text)["input_ids"])
        p = logp.exp()
        mu = (p * logp).sum(-1)
        sigma = ((p * (logp - mu[:, None]) ** 2).sum(-1)).sqrt()
        np.testing.assert_allclose(s.mu, mu.numpy(), atol=1e-5)
        np.testing.assert_allclose(s.sigma, sigma.numpy(), atol=1e-4)
        np.testing.assert_allclose(s.logprobs, text_logprobs(model, tok, [text])[0], atol=1e-6)


def test_answer_logprobs_match_brute_force(model, tok):
    prompts = [qa_prompt("Who wrote the letter?"), "To be", "", "A rose by any other name would"]
    answers = [qa_target("Mara Quell"), ", or not to be, that is the question.", "Hello", " smell"]
    batched = answer_scores(model, tok, prompts, answers, batch_size=4)
    for prompt, answer, got in zip(prompts, answers, batched):
        p = tok(prompt)["input_ids"] or [tok.bos_token_id]  # an empty prompt starts from bos
        a = tok(answer, add_special_tokens=False)["input_ids"]
        logp = _brute_logprobs(model, p + a)[len(p) - 1:]
        want = logp.gather(-1, torch.tensor(a)[:, None])[:, 0].numpy()
        np.testing.assert_allclose(got.logprobs, want, atol=1e-5)
        np.testing.assert_array_equal(got.predictions, logp.argmax(-1).numpy())
        np.testing.assert_array_equal(got.labels, a)
    singles = [answer_logprobs(model, tok, [p], [a], batch_size=1)[0] for p, a in zip(prompts, answers)]
    for s, b in zip(singles, batched):
        np.testing.assert_allclose(s, b.logprobs, atol=1e-5)


def _manual_greedy_ids(model, tok, ids, steps):
    new = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
    return tok.decode(new, skip_special_tokens=True)


def _manual_greedy(model, tok, prompt, steps):
    return _manual_greedy_ids(model, tok, tok(prompt)["input_ids"], steps)


def test_greedy_generate_equals_manual_argmax_loop(model, tok):
    prompts = ["The quick", "Question: Who wrote the letter?\nAnswer:", "A", "To be, or not to be, that"]
    got = greedy_generate(model, tok, prompts, max_new_tokens=7, batch_size=3)
    assert got == [_manual_greedy(model, tok, p, 7) for p in prompts]
    stop = got[0][2:4]
    cut = greedy_generate(model, tok, prompts[:1], max_new_tokens=7, stop=stop)[0]
    assert cut == got[0].split(stop)[0] and stop not in cut


def test_greedy_generate_limits_defaults_and_edges(model, tok):
    """Found by mutation testing: the default length, one new token, the position limit, an empty prompt."""
    prompt = "The quick"
    assert greedy_generate(model, tok, [prompt]) == [_manual_greedy(model, tok, prompt, 32)]  # default: 32 tokens
    assert greedy_generate(model, tok, [prompt], max_new_tokens=1) == [_manual_greedy(model, tok, prompt, 1)]
    # a prompt longer than the positions left keeps its last tokens: 128 positions - 8 new = the last 120
    long_ids = (tok("All the world's a stage, and all the men and women merely players.")["input_ids"] * 20)[:150]
    long_prompt = tok.decode(long_ids)
    ids = tok(long_prompt)["input_ids"]
    assert len(ids) > 120
    assert greedy_generate(model, tok, [long_prompt], max_new_tokens=8) == [
        _manual_greedy_ids(model, tok, ids[-120:], 8)]
    # an empty prompt starts from the beginning-of-text token (not the end-of-text one)
    assert tok.bos_token_id != tok.eos_token_id
    assert greedy_generate(model, tok, [""], max_new_tokens=5) == [_manual_greedy_ids(model, tok, [tok.bos_token_id],
                                                                                     5)]
    for bad, message in ((0, "max_new_tokens must be at least 1, not 0"),
                         (128, "max_new_tokens (128) must be below the model's 128 positions")):
        with pytest.raises(ObliviateError) as info:
            greedy_generate(model, tok, ["a"], max_new_tokens=bad)
        assert str(info.value) == message


def test_scoring_on_a_loop_and_mode_restored(model, tok, loop):
    model.train()
    via_loop = text_logprobs(model, tok, TEXTS, loop=loop)
    assert model.training  # the caller's mode is restored
    model.eval()
    for a, b in zip(via_loop, text_logprobs(model, tok, TEXTS)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_scoring_rejects_bad_input(model, tok):
    with pytest.raises(ObliviateError):
        answer_logprobs(model, tok, ["q"], [""])
    with pytest.raises(ObliviateError):
        answer_logprobs(model, tok, ["q", "r"], ["a"])
    with pytest.raises(ObliviateError):
        text_logprobs(model, tok, ["a"])  # one token: nothing to score
    with pytest.raises(ObliviateError):
        greedy_generate(model, tok, ["a"], max_new_tokens=128)  # no room in 128 positions
    with pytest.raises(ObliviateError):
        text_logprobs(model, tok, "not a list")


# ---------------------------------------------------------------- evaluation entry points

FORGET = ["Mara Quell wrote the letter in the spring.", "The lazy dog sleeps by the old red door."]
HOLDOUT = ["A stage is all the world, said the player.", "Sweet roses grow by any other name."]


@pytest.fixture(scope="module")
def memorised(tok):
    """A tiny GPT-2 trained to memorise the forget texts and one QA pair (full batch, about 4 s on one core)."""
    model = tiny_causal_lm(tok, "gpt2", n_layer=2, n_embd=64, n_head=2, n_positions=128, seed=0)
    seqs = [tok(t)["input_ids"] + [tok.eos_token_id] for t in FORGET]
    seqs.append(tok(qa_prompt("Who wrote the letter?") + qa_target("Mara Quell") + "\n\n")["input_ids"])
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tok.eos_token_id] * (width - len(s)) for s in seqs])
    mask = (torch.arange(width)[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    labels = ids.masked_fill(mask == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_muse_eval_on_a_memorising_model(memorised, tok):
    # split at a word boundary, the space going with the continuation, as the text was tokenised in training
    verbmem = [(" ".join(t.split(" ")[:3]), " " + " ".join(t.split(" ")[3:])) for t in FORGET]
    qa = [("Who wrote the letter?", "Mara Quell")]
    r = muse_eval(memorised, tok, verbmem=verbmem, knowmem_forget=qa, knowmem_retain=[], forget_texts=FORGET,
                  holdout_texts=HOLDOUT, gold_auc=0.5, max_new_tokens=12,
                  verbmem_max_new_tokens=40)
    assert r["verbmem_f"] == pytest.approx(1.0)  # continuations reproduced verbatim
    assert r["knowmem_f"] == pytest.approx(1.0)
    assert "knowmem_r" not in r                  # empty input: metric skipped
    assert r["mink_auc"] == r["loss_auc"] == 1.0  # forget texts recognised as members
    assert r["privleak"] == pytest.approx(-100.0)  # MUSE's sign: an un-unlearned model is near -100
    # the AUCs are those of the per-text scores
    stats_f, stats_h = text_token_stats(memorised, tok, FORGET), text_token_stats(memorised, tok, HOLDOUT)
    want = M.mia_auc([M.min_k_plus_plus(s.logprobs, s.mu, s.sigma) for s in stats_f],
                     [M.min_k_plus_plus(s.logprobs, s.mu, s.sigma) for s in stats_h])
    assert r["minkpp_auc"] == pytest.approx(want)
    with pytest.raises(ObliviateError):
        muse_eval(memorised, tok, verbmem=[], knowmem_forget=[], knowmem_retain=[], forget_texts=FORGET,
                  holdout_texts=[])


def _item(q, a, para, pert):
    return {"question": q, "answer": a, "paraphrased": para, "perturbed": pert}


def test_tofu_eval_consistent_with_metrics(memorised, tok):
    forget = [_item("Who wrote the letter?", "Mara Quell", "Quell, Mara", ["the dog", "a player"])]
    retain = [_item("What sleeps by the door?", "The lazy dog", "the dog", ["Mara", "roses", "a stage"]),
              _item("What grows?", "Sweet roses", "roses", ["dogs"])]
    gold = np.array([0.9, 1.1, 1.3])
    r = tofu_eval(memorised, tok, forget=forget, retain=retain, gold_truth_ratios=gold, max_new_tokens=8)
    assert r["rouge_recall_f"] == pytest.approx(1.0) and r["exact_mem_f"] == 1.0 and r["extraction_f"] == 1.0
    para = answer_logprobs(memorised, tok, [qa_prompt(forget[0]["question"])], [qa_target("Quell, Mara")])[0]
    pert = answer_logprobs(memorised, tok, [qa_prompt(forget[0]["question"])] * 2,
                           [qa_target(p) for p in forget[0]["perturbed"]])
    assert r["truth_ratios_f"][0] == pytest.approx(M.truth_ratio(para, pert))
    assert r["forget_quality"] == pytest.approx(M.forget_quality(r["truth_ratios_f"], gold))
    ans = answer_logprobs(memorised, tok, [qa_prompt(it["question"]) for it in retain],
                          [qa_target(it["answer"]) for it in retain])
    assert r["prob_r"] == pytest.approx(np.mean([M.normalized_probability(a) for a in ans]))
    assert r["model_utility"] == pytest.approx(M.model_utility([r["prob_r"], r["rouge_recall_r"],
                                                                r["truth_score_r"]]))
    with pytest.raises(ObliviateError):
        tofu_eval(memorised, tok, forget=[{"question": "q", "answer": "a"}], retain=retain)


def test_tofu_utility_sets_use_option_normalised_probability(memorised, tok):
    item = _item("What sleeps by the door?", "The lazy dog", "the dog", ["Mara"])
    world = [{"question": "Who wrote the letter?", "answer": "Mara Quell", "perturbed": ["the dog", "a rose"]}]
    r = tofu_eval(memorised, tok, forget=[item], retain=[item], utility_sets={"world": world}, max_new_tokens=8)
    lps = answer_logprobs(memorised, tok, [qa_prompt("Who wrote the letter?")] * 3,
                          [qa_target(a) for a in ["Mara Quell", "the dog", "a rose"]])
    p = [M.normalized_probability(lp) for lp in lps]
    assert r["prob_world"] == pytest.approx(p[0] / sum(p))
    assert r["truth_score_world"] == pytest.approx(M.truth_score([M.truth_ratio(lps[0], lps[1:])]))
    assert r["rouge_recall_world"] == pytest.approx(1.0)
    assert r["model_utility"] == pytest.approx(M.model_utility(
        [r["prob_r"], r["rouge_recall_r"], r["truth_score_r"], r["prob_world"], 1.0, r["truth_score_world"]]))


def test_few_shot_prompt_format():
    assert few_shot_prompt("q?", [("a?", "b"), ("c?", "d")]) == (
        "Question: a?\nAnswer: b\n\nQuestion: c?\nAnswer: d\n\nQuestion: q?\nAnswer:")


def test_verbmem_is_rouge_l_f1_of_128_new_tokens_against_the_reference_cut_to_128_tokens(monkeypatch, memorised, tok):
    """MUSE: 128 new tokens; the reference is truncated to 128 tokens; the score is ROUGE-L F1 (not recall)."""
    import obliviate.text.eval.evaluate as E
    long_ref = " " + " ".join(f"rose{i} dog{i}" for i in range(120))  # far more than 128 tokens
    ids = tok(long_ref, add_special_tokens=False)["input_ids"]
    assert len(ids) > 200
    cut = tok.decode(ids[:128])
    seen = {}

    def fake_generate(model, tokenizer, prompts, max_new_tokens, **kw):
        seen["max_new_tokens"] = max_new_tokens
        return [cut, "a c"]  # the truncated reference verbatim; a prediction with recall 0.5, precision 1

    monkeypatch.setattr(E, "greedy_generate", fake_generate)
    r = muse_eval(memorised, tok, verbmem=[("p", long_ref), ("q", " a b c d")], knowmem_forget=[],
                  knowmem_retain=[], forget_texts=[], holdout_texts=[])
    assert seen["max_new_tokens"] == 128
    assert r["verbmem_f"] == pytest.approx((1.0 + 2 * 0.5 * 1.0 / 1.5) / 2)


def test_privleak_is_computed_from_min_k_auc(monkeypatch, memorised, tok):
    import obliviate.text.eval.evaluate as E
    scores = {True: {"loss": np.array([1.0, 2.0]), "zlib": np.array([0.1, 0.2]), "mink": np.array([0.0, 5.0]),
                     "minkpp": np.array([1.0, 1.0])},
              False: {"loss": np.array([0.0, 0.5]), "zlib": np.array([0.1, 0.2]), "mink": np.array([1.0, 2.0]),
                      "minkpp": np.array([1.0, 1.0])}}
    monkeypatch.setattr(E, "mia_scores", lambda model, tok, texts, *a, **k: scores[list(texts) == FORGET])
    r = muse_eval(memorised, tok, verbmem=[], knowmem_forget=[], knowmem_retain=[], forget_texts=FORGET,
                  holdout_texts=HOLDOUT, gold_auc=0.6)
    assert r["loss_auc"] == 1.0 and r["mink_auc"] == 0.5  # pairs: 0<1, 0<2, 5>1, 5>2
    assert r["privleak"] == pytest.approx((0.5 - 0.4) / 0.4 * 100)


def test_membership_scores_of_qa_read_the_answer_in_the_context_of_its_question(memorised, tok):
    from obliviate.text.eval.evaluate import mia_scores
    pairs = [(qa_prompt("Who wrote the letter?"), qa_target("Mara Quell")), ("To be", ", or not to be")]
    got = mia_scores(memorised, tok, pairs)
    lps = answer_logprobs(memorised, tok, [p for p, _ in pairs], [a for _, a in pairs])
    np.testing.assert_allclose(got["mink"], [M.min_k_score(lp) for lp in lps], atol=1e-6)
    np.testing.assert_allclose(got["loss"], [M.loss_score(lp) for lp in lps], atol=1e-6)
    alone = mia_scores(memorised, tok, [a for _, a in pairs])
    assert not np.allclose(alone["loss"], got["loss"])


def test_model_utility_uses_the_retain_form_of_the_truth_score(monkeypatch, memorised, tok):
    """Retain: mean max(0, 1 - R); forget: mean min(R, 1/R). With R = (0.5, 2.0) they are 0.25 and 0.5."""
    import obliviate.text.eval.evaluate as E
    monkeypatch.setattr(E, "_truth_ratios", lambda model, tok, items, *a, **k: np.array([0.5, 2.0][:len(items)]))
    forget = [_item("Who wrote the letter?", "Mara Quell", "Quell, Mara", ["the dog"]),
              _item("What grows?", "Sweet roses", "roses", ["dogs"])]
    retain = [_item("What sleeps by the door?", "The lazy dog", "the dog", ["Mara"]),
              _item("What grows?", "Sweet roses", "roses", ["dogs"])]
    r = tofu_eval(memorised, tok, forget=forget, retain=retain, max_new_tokens=8)
    assert r["truth_score_r"] == pytest.approx(0.25) and r["truth_score_f"] == pytest.approx(0.5)
    assert r["model_utility"] == pytest.approx(M.model_utility([r["prob_r"], r["rouge_recall_r"], 0.25]))


def test_fact_accuracy_reads_whether_the_answer_states_the_fact(memorised, tok):
    forget = [{**_item("Who wrote the letter?", "Mara Quell", "Quell, Mara", ["the dog"]), "fact": "Mara Quell"}]
    retain = [{**_item("What sleeps by the door?", "The lazy dog", "the dog", ["Mara"]), "fact": "lazy dog"},
              {**_item("What grows?", "Sweet roses", "roses", ["dogs"]), "fact": "tulips"}]
    r = tofu_eval(memorised, tok, forget=forget, retain=retain, max_new_tokens=8)
    generated = greedy_generate(memorised, tok, [qa_prompt(it["question"]) for it in retain], max_new_tokens=8,
                                stop="\n")
    assert r["fact_f"] == 1.0  # the memorised answer states the fact
    assert r["fact_r"] == pytest.approx(np.mean([M.fact_match(g, it["fact"]) for g, it in zip(generated, retain)]))
    assert "fact_f" not in tofu_eval(memorised, tok, forget=[_item("Who wrote the letter?", "Mara Quell", "Quell",
                                                                   ["x"])], retain=retain[:1], max_new_tokens=8)


# ---------------------------------------------------------------- edges found by mutation testing of scoring.py

def _message(fn, *args, **kwargs):
    with pytest.raises(ObliviateError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_scoring_error_messages_are_exact(model, tok):
    from types import SimpleNamespace
    from obliviate.text.eval.scoring import _batches, _pad_id
    assert _message(answer_logprobs, model, tok, "q", ["a"]) == "prompts must be a list of strings"
    assert _message(answer_logprobs, model, tok, ["q"], [3]) == "answers must be a list of strings"
    assert _message(text_logprobs, model, tok, ["a", None]) == "texts must be a list of strings"
    assert _message(greedy_generate, model, tok, "a") == "prompts must be a list of strings"
    assert _message(answer_logprobs, model, tok, ["q", "r"], ["a"]) == "got 2 prompts but 1 answers"
    assert _message(answer_logprobs, model, tok, ["q"], [""]) == "answer 0 is empty: nothing to score"
    assert _message(list, _batches([3, 1], 0)) == "batch_size must be at least 1, not 0"
    assert _message(_pad_id, SimpleNamespace(pad_token_id=None, eos_token_id=None)) == \
        "the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token"


def test_pad_id_and_max_positions_read_the_right_fields():
    from types import SimpleNamespace
    from obliviate.text.eval.scoring import _pad_id, max_positions
    assert _pad_id(SimpleNamespace(pad_token_id=5, eos_token_id=0)) == 5
    assert _pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=7)) == 7
    as_model = lambda **cfg: SimpleNamespace(config=SimpleNamespace(**cfg))  # noqa: E731
    assert max_positions(as_model(n_positions=1)) == 1
    assert max_positions(as_model(n_positions=0, max_position_embeddings=9)) == 9
    assert max_positions(as_model(n_positions=12)) == 12
    assert max_positions(as_model()) is None


def test_long_prompts_lose_their_beginning_and_long_answers_are_refused(model, tok):
    """128 positions: a prompt + answer longer than that keeps the prompt's last tokens; exactly 128 is scored whole;
    an answer of 128 tokens leaves no room for a prompt."""
    answer = " the quick brown fox"
    a = tok(answer, add_special_tokens=False)["input_ids"]
    words = "To be, or not to be, that is the question. " * 40
    prompt_ids = tok(words)["input_ids"][:200]
    prompt = tok.decode(prompt_ids)
    p = tok(prompt)["input_ids"]
    assert len(p) + len(a) > 128
    kept = p[len(p) + len(a) - 128:]
    brute = _brute_logprobs(model, kept + a)
    expected = np.array([brute[len(kept) - 1 + j, t].item() for j, t in enumerate(a)])
    np.testing.assert_allclose(answer_logprobs(model, tok, [prompt], [answer])[0], expected, atol=1e-4)
    exact = tok.decode(p[:128 - len(a)])
    assert len(tok(exact)["input_ids"]) + len(a) == 128
    whole = tok(exact)["input_ids"]
    brute = _brute_logprobs(model, whole + a)
    expected = np.array([brute[len(whole) - 1 + j, t].item() for j, t in enumerate(a)])
    np.testing.assert_allclose(answer_logprobs(model, tok, [exact], [answer])[0], expected, atol=1e-4)
    long_answer = tok.decode((a * 64)[:128])
    n = len(tok(long_answer, add_special_tokens=False)["input_ids"])
    assert n >= 128
    assert _message(answer_logprobs, model, tok, ["q"], [long_answer]) == \
        f"answer 0 has {n} tokens; the model takes at most 128 positions"


def test_text_scores_truncate_to_the_model_or_to_max_length(model, tok):
    long_text = "To be, or not to be, that is the question. " * 40
    n = len(tok(long_text)["input_ids"])
    assert n > 128
    assert len(text_logprobs(model, tok, [long_text])[0]) == 127  # the model's 128 positions, first token unscored
    assert len(text_logprobs(model, tok, [long_text], max_length=9)[0]) == 8
    assert len(text_token_stats(model, tok, [long_text], max_length=9)[0][0]) == 8
    assert _message(text_logprobs, model, tok, ["a b c"], max_length=1) == "max_length must be at least 2, not 1"
    assert len(text_logprobs(model, tok, ["To be or"], max_length=2)[0]) == 1  # 2 is allowed
    one = "a"
    assert len(tok(one)["input_ids"]) == 1
    assert _message(text_logprobs, model, tok, [one]) == "text 0 ('a') has fewer than two tokens: nothing to score"


def test_a_prompt_just_too_long_is_cut_by_the_excess(model, tok):
    """prompt + answer = 130 tokens with a 4-token answer: the prompt loses its first 2 tokens (not 0, not 130 - 4)."""
    answer = " the quick brown fox"
    a = tok(answer, add_special_tokens=False)["input_ids"]
    words = "To be, or not to be, that is the question. " * 40
    ids = tok(words)["input_ids"]
    prompt = tok.decode(ids[:128 - len(a) + 2])
    p = tok(prompt)["input_ids"]
    assert len(p) + len(a) == 130 and len(p) - len(a) <= 128
    kept = p[2:]
    brute = _brute_logprobs(model, kept + a)
    expected = np.array([brute[len(kept) - 1 + j, t].item() for j, t in enumerate(a)])
    np.testing.assert_allclose(answer_logprobs(model, tok, [prompt], [answer])[0], expected, atol=1e-4)


def test_answer_token_stats_are_moments_at_the_answer_positions(model, tok):
    prompts = ["Question: Who wrote the letter?\nAnswer:", "The quick", "", "To be, or not"]
    answers = [" Mara Quell", " brown fox jumps", " A rose", " to be"]
    stats = answer_token_stats(model, tok, prompts, answers, batch_size=3)
    for prompt, answer, s in zip(prompts, answers, stats):
        p_ids = tok(prompt)["input_ids"] or [tok.bos_token_id]  # an empty prompt starts from bos
        a_ids = tok(answer, add_special_tokens=False)["input_ids"]
        logp = _brute_logprobs(model, p_ids + a_ids)[len(p_ids) - 1:]
        p = logp.exp()
        mu = (p * logp).sum(-1)
        sigma = ((p * (logp - mu[:, None]) ** 2).sum(-1)).sqrt()
        np.testing.assert_allclose(s.logprobs, [logp[j, t].item() for j, t in enumerate(a_ids)], atol=1e-5)
        np.testing.assert_allclose(s.mu, mu.numpy(), atol=1e-5)
        np.testing.assert_allclose(s.sigma, sigma.numpy(), atol=1e-4)
    np.testing.assert_allclose(stats[0].logprobs, answer_logprobs(model, tok, prompts[:1], answers[:1])[0], atol=1e-6)
    long_prompt = "To be, or not to be, that is the question. " * 40  # cut to the model's positions, as for log-probs
    long = answer_token_stats(model, tok, [long_prompt], [" the quick brown fox"])[0]
    np.testing.assert_allclose(long.logprobs, answer_logprobs(model, tok, [long_prompt], [" the quick brown fox"])[0],
                               atol=1e-5)
