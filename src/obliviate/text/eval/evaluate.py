"""Evaluate an unlearned causal LM: MUSE's six-way metrics on documents and TOFU's metrics on question answering.

Inputs are plain Python lists (texts, (prompt, continuation) pairs, QA dicts); outputs are dicts of floats. Scores in
[0, 1] stay fractions (MUSE's tables multiply them by 100); PrivLeak is a percentage by definition.
Questions are posed as ``Question: {question}\\nAnswer:`` and answers scored with a leading space (:func:`qa_prompt`,
:func:`qa_target`): train on the same format.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ...errors import ObliviateError
from . import metrics as M
from .scoring import answer_logprobs, answer_scores, answer_token_stats, greedy_generate, text_token_stats

MIA_SCORES = ("loss", "zlib", "mink", "minkpp")


def qa_prompt(question: str) -> str:
    """The prompt a question is posed with (MUSE's KnowMem format)."""
    return f"Question: {question}\nAnswer:"


def qa_target(answer: str) -> str:
    """An answer as it follows :func:`qa_prompt` (a space after "Answer:")."""
    return " " + answer


def few_shot_prompt(question: str, shots: Sequence[tuple[str, str]] = ()) -> str:
    """MUSE's in-context prompt: solved examples "Question: q\\nAnswer: a\\n\\n", then the question."""
    return "".join(f"{qa_prompt(q)}{qa_target(a)}\n\n" for q, a in shots) + qa_prompt(question)


# ---------------------------------------------------------------- MUSE

def _pairs(name: str, pairs) -> list:
    pairs = list(pairs)
    for p in pairs:
        if not (isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p)):
            raise ObliviateError(f"{name} must hold (str, str) pairs, got {p!r}")
    return pairs


def mia_scores(model, tokenizer, texts: Sequence, k: float = 0.4, batch_size: int = 16, loop=None,
               max_length: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Membership scores of each item (higher = more likely a training item): loss, zlib, Min-K% and Min-K%++.

    An item is a text (every token after the first is scored) or a (prompt, answer) pair: the answer's tokens are
    scored in the context of the prompt, as a QA model was trained (OpenUnlearning's MIA on TOFU)."""
    items = list(texts)
    pairs = bool(items) and not isinstance(items[0], str)
    if pairs:
        items = _pairs("membership items", items)
        stats = answer_token_stats(model, tokenizer, [p for p, _ in items], [a for _, a in items],
                                   batch_size=batch_size, loop=loop)
        strings = [a for _, a in items]
    else:
        stats = text_token_stats(model, tokenizer, items, batch_size=batch_size, max_length=max_length, loop=loop)
        strings = items
    return {
        "loss": np.array([M.loss_score(s.logprobs) for s in stats]),
        "zlib": np.array([M.zlib_score(t, s.logprobs) for t, s in zip(strings, stats)]),
        "mink": np.array([M.min_k_score(s.logprobs, k) for s in stats]),
        "minkpp": np.array([M.min_k_plus_plus(s.logprobs, s.mu, s.sigma, k) for s in stats]),
    }


def truncate_tokens(tokenizer, texts: Sequence[str], n: int) -> List[str]:
    """Each text cut to its first ``n`` tokens (MUSE truncates VerbMem's reference to the generation length)."""
    out = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        out.append(tokenizer.decode(ids[:n], skip_special_tokens=True))
    return out


def _knowmem(model, tokenizer, qa, shots, max_new_tokens, batch_size, loop) -> float:
    prompts = [few_shot_prompt(q, shots) for q, _ in qa]
    answers = greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                              stop="\n\n", loop=loop)
    return float(np.mean(M.rouge_l(answers, [a for _, a in qa])["f1"]))


def muse_eval(model, tokenizer, *, verbmem: Sequence[tuple[str, str]], knowmem_forget: Sequence[tuple[str, str]],
              knowmem_retain: Sequence[tuple[str, str]], forget_texts: Sequence, holdout_texts: Sequence,
              gold_auc: Optional[float] = None, few_shot: Sequence[tuple[str, str]] = (), max_new_tokens: int = 32,
              k: float = 0.4, batch_size: int = 16, verbmem_max_new_tokens: int = 128,
              max_length: Optional[int] = None, loop=None) -> dict:
    """MUSE (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv:2407.06460).

    - ``verbmem_f``: mean ROUGE-L F1 of the greedy continuation of each forget prefix (``verbmem_max_new_tokens`` =
      128 new tokens, as MUSE) against the true continuation cut to its first 128 tokens (as MUSE).
    - ``knowmem_f`` / ``knowmem_r``: mean ROUGE-L F1 of greedy answers (``few_shot`` in-context examples, cut at the
      first blank line) on forget / retain QA pairs. Lower on forget, kept on retain.
    - ``{loss,zlib,mink,minkpp}_auc``: ROC AUC of each membership score with ``forget_texts`` as members and
      ``holdout_texts`` as non-members (1 = the forget set is still recognised, ~0.5 for the gold model). Items are
      texts, or (question prompt, answer) pairs scored on the answer in context.
    - ``privleak`` (with ``gold_auc``, the gold model's ``mink_auc``): MUSE's PrivLeak on Min-K% (k = 0.4) in MUSE's
      orientation, (AUC'_u - AUC'_g) / AUC'_g * 100 with AUC' = 1 - mink_auc: ~0 ideal, negative = under-unlearning.

    An empty input skips its metric; at least one must be given. Bad input raises before any forward pass.
    """
    verbmem, kf, kr = _pairs("verbmem", verbmem), _pairs("knowmem_forget", knowmem_forget), \
        _pairs("knowmem_retain", knowmem_retain)
    shots = _pairs("few_shot", few_shot)
    forget_texts, holdout_texts = list(forget_texts), list(holdout_texts)
    if bool(forget_texts) != bool(holdout_texts):
        raise ObliviateError("membership AUCs need both forget_texts and holdout_texts (or neither)")
    if not (verbmem or kf or kr or forget_texts):
        raise ObliviateError("muse_eval got nothing to evaluate: all inputs are empty")
    if gold_auc is not None and not forget_texts:
        raise ObliviateError("privleak needs forget_texts and holdout_texts")
    if gold_auc is not None and not 0.0 <= gold_auc <= 1.0:
        raise ObliviateError(f"gold_auc must be an AUC in [0, 1], not {gold_auc}")
    if not 0.0 < k <= 1.0:
        raise ObliviateError(f"k must be a fraction in (0, 1], not {k}")
    out: dict = {}
    if verbmem:
        gen = greedy_generate(model, tokenizer, [p for p, _ in verbmem], max_new_tokens=verbmem_max_new_tokens,
                              batch_size=batch_size, loop=loop)
        truth = truncate_tokens(tokenizer, [c for _, c in verbmem], verbmem_max_new_tokens)
        out["verbmem_f"] = float(np.mean(M.rouge_l(gen, truth)["f1"]))
    if kf:
        out["knowmem_f"] = _knowmem(model, tokenizer, kf, shots, max_new_tokens, batch_size, loop)
    if kr:
        out["knowmem_r"] = _knowmem(model, tokenizer, kr, shots, max_new_tokens, batch_size, loop)
    if forget_texts:
        members = mia_scores(model, tokenizer, forget_texts, k, batch_size, loop, max_length)
        nonmembers = mia_scores(model, tokenizer, holdout_texts, k, batch_size, loop, max_length)
        for name in MIA_SCORES:
            out[f"{name}_auc"] = M.mia_auc(members[name], nonmembers[name])
        if gold_auc is not None:
            out["privleak"] = M.privleak(1.0 - out["mink_auc"], 1.0 - gold_auc)
    return out


# ---------------------------------------------------------------- TOFU

def _qa_items(name: str, items, need_paraphrase: bool = True) -> list:
    items = list(items)
    for i, it in enumerate(items):
        if not isinstance(it, Mapping):
            raise ObliviateError(f"{name}[{i}] must be a dict with question, answer, paraphrased, perturbed")
        keys = ("question", "answer", "paraphrased") if need_paraphrase else ("question", "answer")
        for key in keys:
            if not isinstance(it.get(key), str) or not it[key]:
                raise ObliviateError(f"{name}[{i}] needs a non-empty string {key!r}")
        pert = it.get("perturbed")
        if isinstance(pert, str) or not pert or not all(isinstance(p, str) and p for p in pert):
            raise ObliviateError(f"{name}[{i}] needs 'perturbed': a non-empty list of non-empty strings")
    return items


def _answer_lp(model, tokenizer, questions, answers, batch_size, loop):
    return answer_logprobs(model, tokenizer, [qa_prompt(q) for q in questions], [qa_target(a) for a in answers],
                           batch_size=batch_size, loop=loop)


def _truth_ratios(model, tokenizer, items, batch_size, loop, paraphrase_key="paraphrased") -> np.ndarray:
    """TOFU truth ratio of every item (one batched pass over paraphrased and all perturbed answers)."""
    para = _answer_lp(model, tokenizer, [it["question"] for it in items],
                      [it.get(paraphrase_key) or it["answer"] for it in items], batch_size, loop)
    flat_q = [it["question"] for it in items for _ in it["perturbed"]]
    flat_a = [p for it in items for p in it["perturbed"]]
    pert = _answer_lp(model, tokenizer, flat_q, flat_a, batch_size, loop)
    out, pos = [], 0
    for it, lp in zip(items, para):
        out.append(M.truth_ratio(lp, pert[pos:pos + len(it["perturbed"])]))
        pos += len(it["perturbed"])
    return np.array(out)


def _qa_split(model, tokenizer, items, batch_size, max_new_tokens, stop, loop) -> dict:
    questions = [it["question"] for it in items]
    answers = [it["answer"] for it in items]
    scores = answer_scores(model, tokenizer, [qa_prompt(q) for q in questions], [qa_target(a) for a in answers],
                           batch_size=batch_size, loop=loop)
    generated = greedy_generate(model, tokenizer, [qa_prompt(q) for q in questions], max_new_tokens=max_new_tokens,
                                batch_size=batch_size, stop=stop, loop=loop)
    ratios = _truth_ratios(model, tokenizer, items, batch_size, loop)
    facts = [it.get("fact") for it in items]
    fact = float(np.mean([M.fact_match(g, f) for g, f in zip(generated, facts)])) if all(facts) else None
    return {
        "fact": fact,
        "prob": float(np.mean([M.normalized_probability(s.logprobs) for s in scores])),
        "rouge_recall": float(np.mean(M.rouge_l(generated, answers)["recall"])),
        "exact_mem": float(np.mean([M.exact_memorization(s.predictions, s.labels) for s in scores])),
        "extraction": float(np.mean([M.extraction_strength(s.predictions, s.labels) for s in scores])),
        "truth_ratios": ratios,
    }


def _utility_set(model, tokenizer, items, batch_size, max_new_tokens, stop, loop) -> list:
    """TOFU's real-authors / world-facts components: probability normalised over the answer options, ROUGE-L
    recall, and the truth score with the answer itself in place of a paraphrase."""
    questions = [it["question"] for it in items]
    correct = _answer_lp(model, tokenizer, questions, [it["answer"] for it in items], batch_size, loop)
    wrong = _answer_lp(model, tokenizer, [it["question"] for it in items for _ in it["perturbed"]],
                       [p for it in items for p in it["perturbed"]], batch_size, loop)
    probs, pos = [], 0
    for it, lp in zip(items, correct):
        p_true = M.normalized_probability(lp)
        p_wrong = sum(M.normalized_probability(w) for w in wrong[pos:pos + len(it["perturbed"])])
        probs.append(p_true / (p_true + p_wrong))
        pos += len(it["perturbed"])
    generated = greedy_generate(model, tokenizer, [qa_prompt(q) for q in questions], max_new_tokens=max_new_tokens,
                                batch_size=batch_size, stop=stop, loop=loop)
    rouge = float(np.mean(M.rouge_l(generated, [it["answer"] for it in items])["recall"]))
    ratios = _truth_ratios(model, tokenizer, items, batch_size, loop, paraphrase_key="answer")
    return [float(np.mean(probs)), rouge, M.truth_score(ratios)]


def tofu_eval(model, tokenizer, *, forget: Sequence[dict], retain: Sequence[dict],
              gold_truth_ratios: Optional[np.ndarray] = None, batch_size: int = 16, max_new_tokens: int = 32,
              utility_sets: Optional[Mapping[str, Sequence[dict]]] = None, stop: Optional[str] = "\n",
              loop=None) -> dict:
    """TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", COLM, arXiv:2401.06121).

    ``forget`` and ``retain`` items: {"question", "answer", "paraphrased", "perturbed": [wrong answers]}.
    Returns, for split s in {f, r}: ``prob_s`` (mean P(a|q)^(1/|a|)), ``rouge_recall_s`` (ROUGE-L recall of the greedy
    answer, cut at ``stop``, with the stemmer as TOFU), ``fact_s`` (fraction of greedy answers that state the item's
    ``fact``, when every item has one), ``exact_mem_s`` and ``extraction_s`` (teacher-forced on the answer), ``truth_ratio_s``
    (mean truth ratio R); ``truth_ratios_f`` / ``truth_ratios_r`` (the arrays), ``truth_score_f`` (mean
    min(R, 1/R)), ``truth_score_r`` (mean max(0, 1 - R)), ``model_utility`` (harmonic mean of prob_r, rouge_recall_r,
    truth_score_r and, for each of ``utility_sets`` -- items with question, answer, perturbed -- its option-normalised
    probability, ROUGE-L recall and truth score: TOFU's nine values with its real-authors and world-facts sets), and ``forget_quality`` when ``gold_truth_ratios`` is given
    (KS-test p-value against the gold model's ``truth_ratios_f``).
    """
    forget, retain = _qa_items("forget", forget), _qa_items("retain", retain)
    if not forget or not retain:
        raise ObliviateError("tofu_eval needs non-empty forget and retain sets")
    extra = {name: _qa_items(name, items, need_paraphrase=False) for name, items in (utility_sets or {}).items()}
    if any(not items for items in extra.values()):
        raise ObliviateError("every utility set must hold at least one item")
    if gold_truth_ratios is not None and len(np.asarray(gold_truth_ratios).reshape(-1)) == 0:
        raise ObliviateError("gold_truth_ratios is empty")
    out: dict = {}
    f = _qa_split(model, tokenizer, forget, batch_size, max_new_tokens, stop, loop)
    r = _qa_split(model, tokenizer, retain, batch_size, max_new_tokens, stop, loop)
    for suffix, split in (("f", f), ("r", r)):
        for key in ("prob", "rouge_recall", "exact_mem", "extraction"):
            out[f"{key}_{suffix}"] = split[key]
        if split["fact"] is not None:
            out[f"fact_{suffix}"] = split["fact"]
        out[f"truth_ratio_{suffix}"] = float(split["truth_ratios"].mean())
    out["truth_ratios_f"] = f["truth_ratios"]
    out["truth_ratios_r"] = r["truth_ratios"]
    out["truth_score_f"] = M.truth_score_forget(f["truth_ratios"])
    out["truth_score_r"] = M.truth_score(r["truth_ratios"])
    components = [out["prob_r"], out["rouge_recall_r"], out["truth_score_r"]]
    for name, items in extra.items():
        prob, rouge, truth = _utility_set(model, tokenizer, items, batch_size, max_new_tokens, stop, loop)
        out.update({f"prob_{name}": prob, f"rouge_recall_{name}": rouge, f"truth_score_{name}": truth})
        components += [prob, rouge, truth]
    out["model_utility"] = M.model_utility(components)
    if gold_truth_ratios is not None:
        out["forget_quality"] = M.forget_quality(f["truth_ratios"], gold_truth_ratios)
    return out
