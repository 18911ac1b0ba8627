"""Classifiers on the grid engine: original and gold models per (seed, forget spec), then each method.

Settings come from presets per (dataset, model) with ``--set`` overrides, typed and range-checked before any work
(:mod:`obliviate.config`). The configuration every row id hashes: the dataset and its resolved arguments, the model
and its resolved arguments, the training recipe, the train size, pruning, mixed precision, and per cell a hash of the
forget set's indices (so an edited ``indices:`` file is a new row).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

from ..config import resolved_kwargs, typed_kwargs
from ..errors import ObliviateError
from ..grid import Cell, Family
from ..presets import apply_overrides, load_preset
from ..task import ForgetSpec

CHEAP_KINDS = ("random", "class", "indices")  # forget kinds that resolve without training a model


@dataclass
class VisionFamily(Family):
    """Settings of a classifier grid (everything but the engine's methods x seeds x forgets)."""
    dataset: str = "mnist1d"
    model: str = "cnn"
    overrides: List[str] = field(default_factory=list)
    data_root: Optional[str] = None
    train_size: Optional[int] = None
    cpu: bool = False
    mixed_precision: str = "no"
    progress: bool = True
    prune: Optional[float] = None   # prune first (sparsity of conv/linear weights), then unlearn; see vision/prune.py
    prune_rounds: int = 1           # 1: one-shot (OMP); more: iterative pruning with rewinding (IMP)
    retrain_corrupt: bool = False   # a damaged cached checkpoint is trained again instead of being an error

    name = "vision"
    references = ("original", "gold")

    # ------------------------------------------------------------------------------------------ settings
    def preset(self, forget: Optional[str] = None) -> dict:
        kind = ForgetSpec.parse(forget).kind if forget else None
        return apply_overrides(load_preset(self.dataset, self.model, kind), self.overrides)

    def resolve(self) -> dict:
        from .data import DATASETS
        from .methods import METHODS
        from .models import MODELS
        from .train import Recipe
        source_fn, model_fn = DATASETS.get(self.dataset), MODELS.get(self.model)
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ObliviateError(f"--mixed-precision {self.mixed_precision!r}: use no, fp16 or bf16")
        if self.train_size is not None and self.train_size < 1:
            raise ObliviateError(f"--train-size {self.train_size}: must be >= 1")
        preset = self.preset()
        unknown = sorted(set(preset["methods"]) - set(METHODS.names()))
        if unknown:
            raise ObliviateError(f"--set names unknown method {unknown[0]!r}; methods: {', '.join(METHODS.names())}")
        dataset_args = typed_kwargs(source_fn, preset["dataset"], "dataset")
        model_args = typed_kwargs(model_fn, preset["model"], "model", positional=2)
        recipe = Recipe.from_dict(preset["recipe"])
        prune = None
        if self.prune is not None:
            from .prune import PruneConfig
            PruneConfig(self.prune, self.prune_rounds)
            prune = {"sparsity": self.prune, "rounds": self.prune_rounds}
        self._resolved = {"dataset_args": dataset_args, "model_args": model_args, "recipe": recipe}
        return {"dataset": self.dataset, "dataset_args": resolved_kwargs(source_fn, dataset_args),
                "model": self.model, "model_args": resolved_kwargs(model_fn, model_args, positional=2),
                "recipe": asdict(recipe), "train_size": self.train_size, "prune": prune,
                "mixed_precision": self.mixed_precision}

    def expand_methods(self, names: List[str]) -> List[str]:
        from .methods import METHODS
        return METHODS.expand(names)

    def method_params(self, method: str, forget: str) -> dict:
        from .methods import create
        return create(method, **self.preset(forget)["methods"].get(method, {})).params()

    def method_source(self, method: str, forget: str) -> str:
        from ..presets import method_sources
        return method_sources(self.dataset, self.model, ForgetSpec.parse(forget).kind, method, self.overrides)

    # ------------------------------------------------------------------------------------------ cells
    def make_task(self, seed: int, forget: str, loop=None):
        from .data import make_task
        s = self._settings()
        context = {"model": self.model, "model_kwargs": s["model_args"], "recipe": asdict(s["recipe"])}
        if loop is not None:
            context["loop"] = loop
        return make_task(self.dataset, forget, seed=seed, data_root=self.data_root, train_size=self.train_size,
                         context=context, **s["dataset_args"])

    def cell_identity(self, seed: int, forget: str) -> dict:
        if ForgetSpec.parse(forget).kind not in CHEAP_KINDS:
            # e.g. worst-case: the selection is computed from this configuration's original model and the seed
            return {"forget": forget, "seed": seed, "derived_from": "original model"}
        task = self.make_task(seed, forget)  # data files, class ranges and index files are checked here
        return {**task.fingerprint(), "n_forget": len(task.forget_idx), "n_retain": len(task.retain_idx),
                "n_unseen": len(task.unseen_idx), "n_test": len(task.test_idx)}

    def open_cell(self, seed: int, forget: str) -> "VisionCell":
        from ..loop import Loop
        from ..store import ModelCache
        from .evaluate import LogitsCache
        from .train import train_reference
        s = self._settings()
        loop = Loop(cpu=self.cpu, mixed_precision=self.mixed_precision, progress=self.progress)
        task = self.make_task(seed, forget, loop)
        cache = ModelCache(retrain_corrupt=self.retrain_corrupt)
        cell = VisionCell(task=task, loop=loop, logits=LogitsCache(task, loop),
                          extra={"n_forget": len(task.forget_idx), "n_retain": len(task.retain_idx)})
        if self.prune is None:
            cell.original, cell.t_original = train_reference("original", task, self.model, s["recipe"], loop, cache,
                                                             s["model_args"])
            cell.gold, cell.t_gold = train_reference("gold", task, self.model, s["recipe"], loop, cache,
                                                     s["model_args"])
        else:
            from .prune import PruneConfig, pruned_references, sparsity
            cell.original, cell.t_original, cell.gold, cell.t_gold = pruned_references(
                task, self.model, s["recipe"], PruneConfig(self.prune, self.prune_rounds), loop, cache,
                s["model_args"])
            cell.extra["prune"] = {"sparsity": self.prune, "rounds": self.prune_rounds,
                                   "measured_sparsity": sparsity(cell.original)}
        return cell

    def write_tables(self, store, rows: List[dict]) -> None:
        from ..report import write_report
        write_report(store, rows=rows)


@dataclass
class VisionCell(Cell):
    task: object
    loop: object
    logits: object
    original: object = None
    gold: object = None
    t_original: float = 0.0
    t_gold: float = 0.0
    extra: dict = field(default_factory=dict)

    def _outputs(self, artifacts: Path) -> Path:
        return Path(str(artifacts) + ".npz")

    def reference(self, role: str, artifacts: Path) -> dict:
        from .run import reference_payload
        model, seconds = (self.original, self.t_original) if role == "original" else (self.gold, self.t_gold)
        payload = reference_payload(model, seconds, self.original, self.gold, self.task, self.loop, self.logits,
                                    outputs=self._outputs(artifacts))
        return {**payload, **self.extra, "gold_seconds": self.t_gold}

    def run(self, method: str, params: dict, artifacts: Path) -> dict:
        from .run import run_method
        payload = run_method(method, params, self.original, self.gold, self.task, self.loop, self.logits,
                             outputs=self._outputs(artifacts))
        return {**payload, **self.extra, "gold_seconds": self.t_gold}
