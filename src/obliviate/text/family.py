"""Language models on the grid engine: target (forget + retain) and gold (retain only) per (seed, forget spec), then
each method, evaluated with MUSE's and TOFU's metrics.

The configuration every row id hashes: the task and its options, the model spec (a tiny model's config, or a local
model's resolved path), the fine-tuning recipe, LoRA rank, evaluation settings (items per split, collapse threshold,
per-epoch selection), and per cell a hash of the forget examples. Plays' ``scale`` / ``sustain`` specs expand into
one cell per step; a sustainability step replays the earlier requests with the same method, so every cell stands
alone (resumable, and runnable as its own Ray task).
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import ObliviateError
from ..grid import Cell, Family
from ..presets import apply_overrides
from .data.tasks import TASKS, forget_specs, make_task

TASK_DEFAULT_FORGET = {"authors": "forget10", "plays": "forget", "jsonl": "forget", "tofu": "forget10",
                       "muse-news": "forget", "muse-books": "forget"}
DATA_ROOT_TASKS = ("jsonl", "tofu", "muse-news", "muse-books")  # tasks that read files under --data-root

# Settings for the tiny from-scratch models (a few minutes on 2 CPU cores). The methods' own defaults are their
# papers' (for 7B-scale pretrained models, lr 1e-5); a 0.5M-parameter model trained at lr 3e-3 needs larger steps.
# Loss methods: lr 3e-4, the smallest of {1e-4, 3e-4, 1e-3} at which GA's forget fact accuracy falls below 10% within
# 10 epochs on `authors` (a criterion on the target side only: the gold model is not read); with --eval-every-epoch
# the grid then picks the epoch.
_TINY_LOSS = {"lr": 3e-4, "epochs": 10, "batch_size": 16}
TINY_PRESET = {
    "task": {"authors": {"n_authors": 24, "n_holdout": 6}, "plays": {}, "jsonl": {}},
    "model": {"n_layer": 2, "n_embd": 128, "n_head": 4, "vocab_size": 1024},
    # authors: 40 epochs, so that the target and the gold model both state ~98% of the retain facts (at 20 epochs the
    # gold model stated 6-7 points fewer than the target)
    "recipe": {"authors": {"epochs": 40, "batch_size": 32, "lr": 3e-3},
               # plays: at 40 epochs the gold model (fewer documents, fewer steps) fitted the retain plays 4.7x worse
               # than the target did (retain token probability 0.028 against 0.131); at 100 both fit them alike
               "plays": {"epochs": 100, "batch_size": 8, "lr": 3e-3},
               "jsonl": {"epochs": 20, "batch_size": 16, "lr": 3e-3}},
    "methods": {**{m: dict(_TINY_LOSS) for m in ("ga", "graddiff", "kl-retain", "npo", "npo-gdr", "npo-klr")},
                "simnpo": dict(_TINY_LOSS),
                "rmu": {"layer": 0, "update_layers": "0", "steering_coeff": 20.0, "alpha": 10.0, "lr": 3e-3,
                        "batch_size": 8, "epochs": 10},
                "task-vector": {"lr": 1e-3, "epochs": 5, "batch_size": 16},
                # WHP's reinforced model is a further fine-tuning: at the tiny models' fine-tuning scale (the target
                # trains at 3e-3), shared by whp and whp-logits (same settings, one cached model); the dictionary
                # of anchored terms is built from the task
                "whp": {**_TINY_LOSS, "anchors": "auto", "reinforce_lr": 1e-3},
                "whp-logits": {"batch_size": 16, "reinforce_lr": 1e-3}},
}


@dataclass
class TextFamily(Family):
    """Settings of a language-model grid (everything but the engine's methods x seeds x forgets)."""
    task: str = "authors"
    model: str = "tiny-gpt2"
    gguf_file: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    data_root: Optional[str] = None
    lora: int = 0                      # LoRA rank for unlearning (0: full fine-tuning)
    eval_every_epoch: bool = False
    select_keep: float = 0.9           # per-epoch selection: keep at least this fraction of the target's utility
    collapse_threshold: float = 0.5    # flag a run whose retain utility < threshold * the target's
    eval_limit: int = 80               # at most this many items per evaluated split
    cpu: bool = False
    progress: bool = True
    retrain_corrupt: bool = False

    name = "text"
    references = ("target", "gold")

    @property
    def model_label(self) -> str:
        return self.model if self.model.startswith("tiny-") else Path(self.model).name or "model"

    def label(self, common: dict):
        return self.task, self.model_label

    # ------------------------------------------------------------------------------------------ settings
    def preset(self) -> dict:
        """Task options, model spec, recipe and per-method hyperparameters, with ``--set`` overrides applied."""
        tiny = self.model.startswith("tiny-")
        preset = {"task": dict(TINY_PRESET["task"].get(self.task, {})) if tiny else {},
                  "model": dict(TINY_PRESET["model"]) if tiny else {},
                  "recipe": dict(TINY_PRESET["recipe"].get(self.task, {})) if tiny else {"epochs": 5, "lr": 1e-5},
                  "methods": copy.deepcopy(TINY_PRESET["methods"]) if tiny else {}}
        return apply_overrides(preset, self.overrides, sections=("task", "model", "recipe"),
                               example="npo.beta=0.2, recipe.epochs=10, model.n_embd=64, task.n_authors=60")

    def resolve(self) -> dict:
        from ..config import resolved_kwargs, typed_fields, typed_kwargs
        from .methods import METHODS
        from .train import ModelSpec, Recipe
        TASKS.get(self.task)
        if self.lora < 0 or not 0.0 <= self.collapse_threshold <= 1.0 or self.eval_limit < 1 or \
                not 0.0 <= self.select_keep <= 1.0:
            raise ObliviateError("--lora must be >= 0, --collapse-threshold and --select-keep in [0, 1], "
                                 "--eval-limit >= 1")
        preset = self.preset()
        unknown = sorted(set(preset["methods"]) - set(METHODS.names()))
        if unknown:
            raise ObliviateError(f"--set names unknown lm method {unknown[0]!r}; methods: {', '.join(METHODS.names())}")
        recipe = Recipe.from_dict(preset["recipe"])
        spec = ModelSpec(name=self.model, gguf_file=self.gguf_file,
                         **typed_fields(ModelSpec, preset["model"], "model"))
        spec.check()
        skip = ("seed", "data_root", "forget")
        options = typed_kwargs(TASKS.get(self.task), preset["task"], "task", skip=skip)
        if self.task in DATA_ROOT_TASKS:
            options["data_root"] = self.data_root
        elif self.data_root:
            raise ObliviateError(f"--data-root is for the jsonl task (and tofu, muse-news, muse-books), "
                                 f"not {self.task}")
        self._resolved = {"recipe": recipe, "spec": spec, "options": options}
        return {"dataset": self.task,
                "task_options": resolved_kwargs(TASKS.get(self.task), {k: v for k, v in options.items()
                                                                       if k != "data_root"}, skip=skip),
                "model": self.model_label, "model_spec": spec.key(), "recipe": asdict(recipe), "lora": self.lora,
                "evaluation": {"eval_limit": self.eval_limit, "collapse_threshold": self.collapse_threshold,
                               "eval_every_epoch": self.eval_every_epoch,
                               **({"select_keep": self.select_keep} if self.eval_every_epoch else {})}}

    def expand_methods(self, names: List[str]) -> List[str]:
        from .methods import METHODS
        return METHODS.expand(names)

    def method_params(self, method: str, forget: str) -> dict:
        from .methods import create
        return create(method, **self.preset()["methods"].get(method, {})).params()

    def expand_forgets(self, forget: str) -> List[str]:
        return forget_specs(self.task, forget, **self._settings()["options"])

    # ------------------------------------------------------------------------------------------ cells
    def cell_identity(self, seed: int, forget: str) -> dict:
        task = make_task(self.task, forget, seed=seed, **self._settings()["options"])  # bad specs, missing files
        return {**task.fingerprint("target"), "forget_examples": _digest(task.forget_examples),
                "evaluation": _evaluation_digest(task), "n_forget": len(task.forget_examples),
                "n_retain": len(task.retain_examples), "n_holdout": len(task.holdout_examples)}

    def open_cell(self, seed: int, forget: str) -> "TextCell":
        from ..loop import Loop
        from .run import Evaluator, with_self_reference
        from .train import LMCache, train_reference
        s = self._settings()
        loop = Loop(cpu=self.cpu, progress=self.progress)
        task = make_task(self.task, forget, seed=seed, **s["options"])
        cache = LMCache(retrain_corrupt=self.retrain_corrupt)
        target, tokenizer, t_target = train_reference("target", task, s["spec"], s["recipe"], loop, cache)
        gold, gold_tokenizer, t_gold = train_reference("gold", task, s["spec"], s["recipe"], loop, cache)
        evaluator = Evaluator(task, loop, self.eval_limit)
        evaluator.gold = with_self_reference(evaluator(gold, gold_tokenizer))
        evaluator.target = evaluator(target, tokenizer)
        return TextCell(family=self, task=task, loop=loop, target=target, tokenizer=tokenizer, evaluator=evaluator,
                        target_metrics=evaluator.target, t_target=t_target, t_gold=t_gold)

    def write_tables(self, store, rows: List[dict]) -> None:
        from .tables import write_tables
        write_tables(store, rows)


def _evaluation_digest(task) -> str:
    """What the metrics read beyond the training data (questions with their paraphrased and perturbed answers,
    verbatim probes, utility sets): a change there changes the row ids."""
    from ..store import config_hash
    qa = lambda items: [q.as_dict() for q in items]  # noqa: E731
    return config_hash({"forget_qa": qa(task.forget_qa), "retain_qa": qa(task.retain_qa),
                        "verbmem": [list(v) for v in task.verbmem],
                        "utility": {k: qa(v) for k, v in sorted(task.utility_sets.items())}}, 16)


def _digest(examples) -> str:
    return hashlib.sha256(json.dumps(sorted(map(list, examples))).encode()).hexdigest()[:16]


@dataclass
class TextCell(Cell):
    family: TextFamily
    task: object
    loop: object
    target: object
    tokenizer: object
    evaluator: object
    target_metrics: dict
    t_target: float
    t_gold: float

    def reference(self, role: str, artifacts: Path) -> dict:
        from .run import reference_row
        metrics, seconds = ((self.target_metrics, self.t_target) if role == "target"
                            else (self.evaluator.gold, self.t_gold))
        payload = reference_row(metrics, seconds, self.target_metrics["utility"], self.family.collapse_threshold)
        return {**payload, **self.sizes()}

    def sizes(self) -> dict:
        return {"n_forget": len(self.task.forget_examples), "n_retain": len(self.task.retain_examples),
                "n_holdout": len(self.task.holdout_examples), "gold_seconds": self.t_gold}

    def run(self, method: str, params: dict, artifacts: Path) -> dict:
        from .run import replay_requests, run_method
        f, s = self.family, self.family._settings()
        start = self.target
        if self.task.previous_requests:  # sustainability: the earlier requests first, with the same method
            start = replay_requests(method, params, self.target, self.tokenizer, self.task, self.loop, s["recipe"],
                                    f.lora)
        payload, _ = run_method(method, params, start, self.tokenizer, self.task, self.loop, s["recipe"],
                                self.evaluator, self.target_metrics["utility"], f.lora, f.eval_every_epoch,
                                f.collapse_threshold, f.select_keep)
        return {**payload, "request": len(self.task.previous_requests) + 1, **self.sizes()}
