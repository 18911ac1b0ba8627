"""RESTOR on the grid engine: per seed a cell with the clean and the corrupted model (both cached, checksummed), then
every language-model method unlearns the corruption documents from the corrupted model; rows hold RESTOR's metrics.

The clean model of ``authors`` is the ``authors`` task's target model (the same cache entry); with ``jsonl`` it is the
model fine-tuned on clean.jsonl. The corrupted model continues training the clean model on the corruption documents
mixed with the correct documents for ``restor.corrupt_epochs`` epochs (the recipe's batch size; learning rate
``restor.corrupt_lr``, by default the recipe's).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import List

import numpy as np

from ...errors import ObliviateError
from ...grid import Cell
from ..data.tasks import QA, LMTask, qa_prompt
from ..family import TextFamily
from .data import RESTOR_TASKS, RestorData, RestorSettings, add_recovery, make_restor, probe_outcomes, summarise

FORGET = "corruption"  # the one forget spec: the corruption documents


@dataclass
class RestorFamily(TextFamily):
    """A language-model family whose cells are RESTOR's clean -> corrupted setting."""
    restor: dict = field(default_factory=dict)  # RestorSettings fields (``--set restor.KEY=VALUE``)

    name = "restor"
    references = ("clean", "corrupted")

    def resolve(self) -> dict:
        from ...config import typed_fields
        if self.task not in RESTOR_TASKS:
            raise ObliviateError(f"restor: --task {self.task!r} is not supported; use {' or '.join(RESTOR_TASKS)}")
        if self.eval_every_epoch:
            raise ObliviateError("restor: --eval-every-epoch is not supported (rows report the last epoch)")
        settings = RestorSettings(**typed_fields(RestorSettings, self.restor, "restor"))
        settings.check()
        if self.task == "jsonl":
            from .data import check_files
            check_files(self.data_root)
        common = super().resolve()
        self._resolved["restor"] = settings
        return {**common, "restor": asdict(settings)}

    def expand_forgets(self, forget: str) -> List[str]:
        if forget != FORGET:
            raise ObliviateError(f"restor: the forget set is {FORGET!r} (the corruption documents), not {forget!r}")
        return [forget]

    def data(self, seed: int) -> RestorData:
        s = self._settings()
        return make_restor(self.task, seed, s["restor"], {k: v for k, v in s["options"].items() if k != "data_root"},
                           self.data_root)

    def cell_identity(self, seed: int, forget: str) -> dict:
        return self.data(seed).identity()

    def open_cell(self, seed: int, forget: str) -> "RestorCell":
        from ...loop import Loop
        from ..train import LMCache
        s = self._settings()
        loop = Loop(cpu=self.cpu, progress=self.progress)
        data = self.data(seed)
        cache = LMCache(retrain_corrupt=self.retrain_corrupt)
        clean, tokenizer, t_clean, clean_key = clean_model(data, s["spec"], s["recipe"], loop, cache)
        corrupted, t_corrupt = corrupted_model(clean, tokenizer, data, clean_key, s["recipe"], s["restor"], loop,
                                               cache)
        evaluator = RestorEvaluator(data, loop, self.eval_limit, s["restor"].max_new_tokens)
        m_clean, m_corrupted = evaluator(clean, tokenizer), evaluator(corrupted, tokenizer)
        evaluator.clean, evaluator.corrupted = m_clean, m_corrupted
        return RestorCell(family=self, data=data, loop=loop, corrupted=corrupted, tokenizer=tokenizer,
                          evaluator=evaluator, seconds={"clean": t_clean, "corrupted": t_corrupt})

    def write_tables(self, store, rows: List[dict]) -> None:
        from .report import write_restor_report
        write_restor_report(store, rows)


# ------------------------------------------------------------------------------------------------------ models

def clean_model(data: RestorData, spec, recipe, loop, cache):
    """(model, tokenizer, seconds, key): the authors task's target model, or a model fine-tuned on clean.jsonl."""
    from ..train import finetune, train_reference
    if data.base_task is not None:
        model, tokenizer, seconds = train_reference("target", data.base_task, spec, recipe, loop, cache)
        return model, tokenizer, seconds, {"task": data.base_task.fingerprint("target")}
    examples = sorted(data.clean_examples)
    key = {"role": "restor-clean", "data": data.identity(), "model": spec.key(), "recipe": asdict(recipe),
           "seed": data.seed}

    def train():
        # the tokenizer sees every text of the setting (a tokenizer is not knowledge), the model learns clean docs
        texts = LMTask.texts(data.clean_examples + data.corruption_examples)
        texts += [f"{qa_prompt(p.question)} {a}" for p in data.probes
                  for a in (p.clean_answer, p.corrupted_answer, p.random_answer)]
        model, tokenizer = spec.build(texts, seed=data.seed)
        return finetune(model, tokenizer, examples, recipe, loop, seed=data.seed, desc="restor-clean"), tokenizer

    model, tokenizer, seconds = cache.get_or_train(key, train, loop)
    return model.eval(), tokenizer, seconds, key


def corrupted_model(clean, tokenizer, data: RestorData, clean_key: dict, recipe, settings: RestorSettings, loop,
                    cache):
    """(model, seconds): the clean model trained further on the corruption documents mixed with the correct ones."""
    from ..train import finetune
    lr = settings.corrupt_lr if settings.corrupt_lr is not None else recipe.lr
    steps = replace(recipe, epochs=settings.corrupt_epochs, lr=lr)
    examples = sorted(data.corruption_examples + data.correct_examples)
    key = {"role": "restor-corrupted", "clean": clean_key, "model_recipe": asdict(recipe), "recipe": asdict(steps),
           "data": data.identity(), "seed": data.seed}
    train = lambda: (finetune(copy.deepcopy(clean), tokenizer, examples, steps, loop, seed=data.seed,  # noqa: E731
                              desc="restor-corrupt"), tokenizer)
    model, _, seconds = cache.get_or_train(key, train, loop)
    return model.eval(), seconds


# -------------------------------------------------------------------------------------------------- evaluation

class RestorEvaluator:
    """RESTOR's metrics of a model (:func:`restor.summarise`), plus ``utility``: the fact accuracy on retain probes
    (facts nothing contradicts; at most ``limit`` of them), else the correct documents' geometric-mean token
    probability. ``clean`` and ``corrupted`` hold the reference models' metrics once evaluated."""

    def __init__(self, data: RestorData, loop, limit: int = 80, max_new_tokens: int = 24, batch_size: int = 16):
        self.data, self.loop, self.max_new_tokens, self.batch_size = data, loop, max_new_tokens, batch_size
        rng = np.random.default_rng(data.seed)
        pick = lambda items: [items[i] for i in sorted(rng.permutation(len(items))[:limit])]  # noqa: E731
        self.retain_probes = pick(data.retain_probes)
        self.correct = pick(data.correct_examples)
        # what a method's report on itself reads (ECO's classifier rates), under the names run.Evaluator gives them
        self.retain_qa, self.retain = self.retain_probes, self.correct
        self.forget_qa = [QA(p.question, p.corrupted_answer) for p in data.probes]
        self.forget_texts = [p + c for p, c in pick(data.corruption_examples)]
        self.verbmem, self.holdout_texts = [], []
        self.clean: dict = {}
        self.corrupted: dict = {}
        self.target: dict = {}  # run_method reads it (TOFU's model utility); RESTOR has none

    def _answers(self, model, tokenizer, questions) -> List[str]:
        from ..eval.scoring import greedy_generate
        return greedy_generate(model, tokenizer, [qa_prompt(q) for q in questions], self.max_new_tokens,
                               self.batch_size, stop="\n", loop=self.loop)

    def __call__(self, model, tokenizer) -> dict:
        import time

        from ..eval.metrics import fact_match
        from ..eval.scoring import answer_logprobs
        start = time.perf_counter()
        probes = self.data.probes
        outcomes = probe_outcomes(self._answers(model, tokenizer, [p.question for p in probes]), probes)
        prompts = [qa_prompt(p.question) for p in probes]
        logprobs = {}
        for option in ("clean", "corrupted", "random"):
            lps = answer_logprobs(model, tokenizer, prompts, [" " + getattr(p, f"{option}_answer") for p in probes],
                                  self.batch_size, loop=self.loop)
            logprobs[option] = np.array([lp.mean() for lp in lps])
        out = summarise(outcomes, logprobs, probes)
        if self.retain_probes:
            answers = self._answers(model, tokenizer, [q.question for q in self.retain_probes])
            out["retain_acc"] = float(np.mean([fact_match(a, q.fact) for a, q in zip(answers, self.retain_probes)]))
            out["utility"] = out["retain_acc"]
        else:
            lps = answer_logprobs(model, tokenizer, [p or tokenizer.bos_token or "" for p, _ in self.correct],
                                  [c for _, c in self.correct], self.batch_size, loop=self.loop)
            out["retain_prob"] = float(np.exp(np.mean(np.concatenate(lps))))
            out["utility"] = out["retain_prob"]
        if hasattr(model, "extra_metrics"):  # what a method reports about itself (e.g. DP2U's privacy)
            out.update(model.extra_metrics(self, tokenizer))
        out["eval_seconds"] = time.perf_counter() - start
        return out

    def with_recovery(self, metrics: dict) -> dict:
        return add_recovery(metrics, self.clean, self.corrupted)


@dataclass
class RestorCell(Cell):
    family: RestorFamily
    data: RestorData
    loop: object
    corrupted: object
    tokenizer: object
    evaluator: RestorEvaluator
    seconds: dict

    def sizes(self) -> dict:
        return {"n_corruption": len(self.data.corruption_examples), "n_correct": len(self.data.correct_examples),
                "n_probes": len(self.data.probes), "clean_seconds": self.seconds["clean"],
                "corrupt_seconds": self.seconds["corrupted"]}

    def reference(self, role: str, artifacts: Path) -> dict:
        from ..run import reference_row
        metrics = self.evaluator.clean if role == "clean" else self.evaluator.corrupted
        row = reference_row(self.evaluator.with_recovery(metrics), self.seconds[role],
                            self.evaluator.clean["utility"], self.family.collapse_threshold)
        return {**row, **self.sizes()}

    def run(self, method: str, params: dict, artifacts: Path) -> dict:
        from ..run import public, run_method
        f, s = self.family, self.family._settings()
        payload, model = run_method(method, params, self.corrupted, self.tokenizer, self.data.unlearning_task(),
                                    self.loop, s["recipe"], self.evaluator, self.evaluator.clean["utility"], f.lora,
                                    False, f.collapse_threshold)
        payload["metrics"] = public(self.evaluator.with_recovery(payload["metrics"]))
        return {**payload, **self.sizes()}


__all__ = ["RestorFamily", "RestorCell", "RestorEvaluator", "clean_model", "corrupted_model", "FORGET"]
