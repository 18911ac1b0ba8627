"""One language-model run: unlearn a copy of the target, evaluate it (optionally after every epoch), build its row.

``Evaluator`` scores a model on one task (MUSE's metrics always, TOFU's on question answering); ``run_method`` runs one
method and returns its row; ``reference_row`` builds the target's and the gold model's rows.
"""
from __future__ import annotations

import copy
import time
from typing import Dict, List, Optional

import numpy as np

from ..loop import Loop
from .data.tasks import LMTask
from .train import Recipe, encode


# ------------------------------------------------------------------------------------------------- evaluation

class Evaluator:
    """Scores models on one task: MUSE's metrics always, TOFU's when the task has QA pairs with perturbed answers.

    ``utility`` (what collapse detection and epoch selection read) is the retain FACT accuracy on QA tasks whose
    questions name their fact (the fraction of retain questions whose greedy answer states the fact), TOFU's model
    utility on other QA tasks, and the retain text's likelihood on documents. ``gold`` (the gold model's metrics)
    feeds PrivLeak and forget quality; ``target`` (the target's metrics, optional) adds TOFU's model utility to the
    collapse check."""

    def __init__(self, task: LMTask, loop: Loop, limit: int = 80, batch_size: int = 16):
        self.task, self.loop, self.limit, self.batch_size = task, loop, limit, batch_size
        rng = np.random.default_rng(task.seed)
        pick = lambda items: [items[i] for i in sorted(rng.permutation(len(items))[:limit])]  # noqa: E731
        self.verbmem = pick(task.verbmem)
        self.forget_qa = pick(task.forget_qa)
        retain_qa = pick(task.retain_qa) if task.retain_qa else []
        # solved questions shown in the prompt (MUSE's few-shot format) for document tasks; never scored
        if task.few_shot:
            self.shots = [(q.question, q.answer) for q in task.few_shot]
        else:
            self.shots = [(q.question, q.answer) for q in retain_qa[:3]] if not _trained_qa(task) else []
        self.retain_qa = retain_qa if task.few_shot else retain_qa[len(self.shots):]
        # membership scores read what the loss trained: a QA answer in the context of its question, or a document
        items = lambda examples: [(p, c) if p else c for p, c in examples]  # noqa: E731
        self.forget_texts = pick(task.membership.get("forget") or items(task.evaluated_forget))
        self.holdout_texts = pick(task.membership.get("holdout") or items(task.holdout_examples))
        self.retain = pick(task.retain_examples)
        self.utility_sets = {name: [q.as_dict() for q in pick(qs)] for name, qs in task.utility_sets.items()}
        # TOFU's metrics read QA the model was trained on (question-answer tasks); on documents the retain utility
        # is the likelihood of the retain text
        self.tofu = _trained_qa(task) and bool(self.forget_qa and self.retain_qa) and \
            all(q.perturbed for q in self.forget_qa + self.retain_qa)
        self.gold: dict = {}
        self.target: dict = {}

    def __call__(self, model, tokenizer) -> dict:
        from .eval.evaluate import muse_eval, tofu_eval
        from .eval.scoring import answer_logprobs, text_logprobs
        start = time.perf_counter()
        out = muse_eval(model, tokenizer, verbmem=self.verbmem,
                        knowmem_forget=[(q.question, q.answer) for q in self.forget_qa],
                        knowmem_retain=[(q.question, q.answer) for q in self.retain_qa],
                        forget_texts=self.forget_texts, holdout_texts=self.holdout_texts,
                        gold_auc=self.gold.get("mink_auc"), few_shot=self.shots, batch_size=self.batch_size,
                        loop=self.loop)
        qa = [(p, c) for p, c in self.retain if p]
        docs = [c for p, c in self.retain if not p]
        lps = (answer_logprobs(model, tokenizer, [p for p, _ in qa], [c for _, c in qa], self.batch_size,
                               loop=self.loop) if qa else [])
        lps += text_logprobs(model, tokenizer, docs, batch_size=self.batch_size, loop=self.loop) if docs else []
        out["retain_prob"] = float(np.exp(np.mean(np.concatenate(lps))))  # geometric-mean token probability
        if self.tofu:
            tofu = tofu_eval(model, tokenizer, forget=[q.as_dict() for q in self.forget_qa],
                             retain=[q.as_dict() for q in self.retain_qa],
                             gold_truth_ratios=self.gold.get("truth_ratios_f"), batch_size=self.batch_size,
                             utility_sets=self.utility_sets, loop=self.loop)
            out.update(tofu)
            out["utility"] = tofu.get("fact_r", tofu["model_utility"])
        else:
            out["utility"] = out["retain_prob"]
        if hasattr(model, "extra_metrics"):  # what a method reports about itself (ECO: classifier; DP2U: privacy)
            out.update(model.extra_metrics(self, tokenizer))
        out["eval_seconds"] = time.perf_counter() - start
        return out

    def forget_knowledge(self, metrics: dict) -> float:
        """What the model still knows of the forget set (lower = more forgotten), without the gold model: forget fact
        accuracy on QA with facts, else KnowMem + VerbMem on the forget set."""
        if "fact_f" in metrics:
            return metrics["fact_f"]
        return metrics.get("knowmem_f", 0.0) + metrics.get("verbmem_f", 0.0)

    def select_epoch(self, by_epoch: Dict[int, dict], target_utility: float, keep: float) -> int:
        """The epoch to report, chosen WITHOUT the gold model (as TOFU and MUSE pick an epoch): among the epochs whose
        utility stays at or above ``keep`` x the target's (retain knowledge kept), the one that knows the least of
        the forget set (ties: higher utility, then the earlier epoch); when no epoch keeps that much utility, the
        epoch with the highest utility."""
        kept = [e for e, m in by_epoch.items() if m["utility"] >= keep * target_utility]
        if not kept:
            return max(by_epoch, key=lambda e: (by_epoch[e]["utility"], -e))
        return min(kept, key=lambda e: (round(self.forget_knowledge(by_epoch[e]), 9), -by_epoch[e]["utility"], e))


def _trained_qa(task: LMTask) -> bool:
    return any(p for p, _ in task.retain_examples)


def with_self_reference(gold: dict) -> dict:
    """The gold model's own privleak (0) and forget quality (1), computed as for any other model."""
    from .eval import metrics as M
    out = dict(gold)
    if "mink_auc" in out:
        out["privleak"] = M.privleak(1.0 - out["mink_auc"], 1.0 - out["mink_auc"])
    if "truth_ratios_f" in out:
        out["forget_quality"] = M.forget_quality(out["truth_ratios_f"], out["truth_ratios_f"])
    return out


def public(metrics: dict) -> dict:
    """Row-ready metrics: arrays become lists (truth ratios are kept for redrawing distributions)."""
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------------------- runs

def unlearn_once(name: str, hyperparameters: dict, model, tokenizer, task: LMTask, loop: Loop, recipe: Recipe,
                 lora: int = 0, on_epoch=None):
    """Run one method on a copy of ``model``; returns (unlearned model, info). ``model`` is never modified."""
    from .anchors.dictionary import build_anchors
    from .methods import UnlearnData, create
    method = create(name, **hyperparameters)
    data = UnlearnData(forget=encode(tokenizer, task.forget_examples, recipe.max_length),
                       retain=encode(tokenizer, task.retain_examples, recipe.max_length), tokenizer=tokenizer,
                       seed=task.seed, on_epoch=on_epoch, anchor_terms=lambda: build_anchors(task))
    work = copy.deepcopy(model)
    if lora:
        from .models import add_lora
        work = add_lora(work, r=lora)
    work.train()
    loop.seed(task.seed)
    start = time.perf_counter()
    work = method.unlearn(work, data, loop)
    seconds = time.perf_counter() - start
    if lora and hasattr(work, "merge_and_unload"):
        work = work.merge_and_unload()
    return work.eval(), {"seconds": seconds, "params": method.params()}


def run_method(name: str, hyperparameters: dict, start_model, tokenizer, task: LMTask, loop: Loop, recipe: Recipe,
               evaluator: Evaluator, target_utility: float, lora: int = 0,
               eval_every_epoch: bool = False, collapse_threshold: float = 0.5, keep: float = 0.9):
    """One run's row payload and the unlearned model; raises on failure (the grid records a failed row).

    With ``eval_every_epoch`` the model is evaluated after every unlearning epoch and the row reports the epoch
    :meth:`Evaluator.select_epoch` picks (``selected_epoch``, ``epoch_metrics``); the gold model is never read."""
    row = {"params": dict(hyperparameters)}
    epochs: List[dict] = []
    states: Dict[int, tuple] = {}
    eval_seconds = [0.0]

    def on_epoch(epoch, model):
        m = evaluator(model, tokenizer)
        eval_seconds[0] += m["eval_seconds"]
        epochs.append({"epoch": epoch, **{k: v for k, v in public(m).items() if not k.startswith("truth_ratios")}})
        states[epoch] = ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, m)

    model, info = unlearn_once(name, hyperparameters, start_model, tokenizer, task, loop, recipe, lora,
                               on_epoch if eval_every_epoch else None)
    info["seconds"] -= eval_seconds[0]  # unlearning time, without the per-epoch evaluations
    row["params"] = info["params"]
    row["seconds"] = info["seconds"]
    if states:
        best = evaluator.select_epoch({e: m for e, (_, m) in states.items()}, target_utility, keep)
        model.load_state_dict(states[best][0])
        metrics = states[best][1]
        row["epoch_metrics"], row["selected_epoch"] = epochs, best
    else:
        metrics = evaluator(model, tokenizer)
    finish_row(row, metrics, info["seconds"], target_utility, collapse_threshold, evaluator.target)
    return row, model


def collapsed(metrics: dict, target_utility: float, threshold: float, target: Optional[dict] = None) -> bool:
    """A run has collapsed when its utility (retain fact accuracy on QA with facts) falls below ``threshold`` x the
    target's, or, with the target's metrics at hand, its TOFU model utility does."""
    if metrics["utility"] < threshold * target_utility:
        return True
    if target and "model_utility" in target and "model_utility" in metrics:
        return bool(metrics["model_utility"] < threshold * target["model_utility"])
    return False


def finish_row(row: dict, metrics: dict, seconds: float, target_utility: float, threshold: float,
               target: Optional[dict] = None) -> None:
    row["metrics"] = public(metrics)
    row["metrics"]["seconds"] = seconds
    row["utility_ratio"] = float(metrics["utility"] / target_utility) if target_utility > 0 else float("nan")
    row["collapsed"] = collapsed(metrics, target_utility, threshold, target)
    row["status"] = "ok"


def reference_row(metrics: dict, seconds: float, target_utility: float, threshold: float) -> dict:
    """The row payload of the target or the gold model."""
    row = {"seconds": seconds}
    finish_row(row, metrics, seconds, target_utility, threshold)
    return row


def replay_requests(name, params: dict, target, tokenizer, task: LMTask, loop, recipe, lora):
    """The model after the earlier sustainability requests, unlearned one after another with the same method."""
    model = target
    for request in task.previous_requests:
        step = copy.copy(task)
        step.forget_examples, step.previous_requests = request, []
        model, _ = unlearn_once(name, params, model, tokenizer, step, loop, recipe, lora)
    return model
