"""The benchmark grid for language models: methods x seeds x forget specs on one task and model.

The target model (forget + retain) and the gold model (retain only) are trained once per seed and cached. Each run
writes its JSON row the moment it finishes; rerunning the same grid skips finished rows (resume); a failing method is
recorded as failed with its error and the grid goes on. Rows hold MUSE's metrics (verbmem_f, knowmem_f, knowmem_r,
privleak, membership AUCs), TOFU's (forget_quality, model_utility, truth ratios) for QA tasks, a collapse flag, and with
``eval_every_epoch`` the metrics of every unlearning epoch and the selected one. Plays' ``scale``/``sustain`` specs give
the scalability and sustainability series (one row per step).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import ObliviateError
from ..presets import apply_overrides
from ..loop import Loop
from ..rows import base_row, run_id
from ..store import RunStore, atomic_write_json
from .data import TASKS, forget_specs, make_task
from .run import Evaluator, reference_row, replay_requests, run_method, with_self_reference
from .train import LMCache, ModelSpec, Recipe, train_reference

REFERENCES = ("target", "gold")
TASK_DEFAULT_FORGET = {"authors": "forget10", "plays": "forget", "jsonl": "forget"}

# Settings for the tiny from-scratch models (a few minutes on 2 CPU cores). The methods' own defaults are their
# papers' (for 7B-scale pretrained models, lr 1e-5); a 0.5M-parameter model trained at lr 3e-3 needs larger steps.
_TINY_LOSS = {"lr": 1e-4, "epochs": 5, "batch_size": 16}
TINY_PRESET = {
    "task": {"authors": {"n_authors": 24, "n_holdout": 6}, "plays": {}, "jsonl": {}},
    "model": {"n_layer": 2, "n_embd": 128, "n_head": 4, "vocab_size": 1024},
    "recipe": {"authors": {"epochs": 20, "batch_size": 32, "lr": 3e-3},
               "plays": {"epochs": 40, "batch_size": 8, "lr": 3e-3},
               "jsonl": {"epochs": 20, "batch_size": 16, "lr": 3e-3}},
    "methods": {**{m: dict(_TINY_LOSS) for m in ("ga", "graddiff", "kl-retain", "npo", "npo-gdr", "npo-klr")},
                "simnpo": {**_TINY_LOSS, "lr": 1e-3},  # its forget weight gamma is 1/8: a larger step
                "rmu": {"layer": 0, "update_layers": "0", "steering_coeff": 20.0, "alpha": 10.0, "lr": 3e-3,
                        "batch_size": 8, "epochs": 5},
                "task-vector": {"lr": 1e-3, "epochs": 5, "batch_size": 16}},
}


@dataclass
class LMGrid:
    task: str = "authors"
    forgets: List[str] = field(default_factory=lambda: ["forget10"])
    methods: List[str] = field(default_factory=lambda: ["all"])
    seeds: List[int] = field(default_factory=lambda: [0])
    model: str = "tiny-gpt2"
    gguf_file: Optional[str] = None
    name: str = "lm-default"
    root: str = "runs"
    overrides: List[str] = field(default_factory=list)
    data_root: Optional[str] = None
    lora: int = 0                      # LoRA rank for unlearning (0: full fine-tuning)
    eval_every_epoch: bool = False
    collapse_threshold: float = 0.5    # flag a run whose retain utility < threshold * the target's
    eval_limit: int = 80               # at most this many items per evaluated split
    cpu: bool = False
    progress: bool = True

    @property
    def directory(self) -> Path:
        return Path(self.root) / self.name

    @property
    def model_label(self) -> str:
        return self.model if self.model.startswith("tiny-") else Path(self.model).name or "model"


def expand_methods(names: List[str]) -> List[str]:
    from .methods import METHODS
    out = METHODS.expand(names)
    if not out:
        raise ObliviateError("give at least one method (or `all`)")
    return out


def resolve_preset(grid: LMGrid) -> dict:
    """Task options, model spec, recipe and per-method hyperparameters, with ``--set`` overrides applied."""
    tiny = grid.model.startswith("tiny-")
    preset = {"task": dict(TINY_PRESET["task"].get(grid.task, {})) if tiny else {},
              "model": dict(TINY_PRESET["model"]) if tiny else {},
              "recipe": dict(TINY_PRESET["recipe"].get(grid.task, {})) if tiny else {"epochs": 5, "lr": 1e-5},
              "methods": copy.deepcopy(TINY_PRESET["methods"]) if tiny else {}}
    return apply_overrides(preset, grid.overrides, sections=("task", "model", "recipe"),
                           example="npo.beta=0.2, recipe.epochs=10, model.n_embd=64, task.n_authors=60")


def validate(grid: LMGrid) -> dict:
    """Check every name, spec and hyperparameter before any work; returns the resolved preset."""
    from .methods import create
    TASKS.get(grid.task)
    if not grid.forgets:
        raise ObliviateError("give at least one forget spec")
    if not grid.seeds:
        raise ObliviateError("give at least one seed")
    if grid.lora < 0 or not 0.0 <= grid.collapse_threshold <= 1.0 or grid.eval_limit < 1:
        raise ObliviateError("--lora must be >= 0, --collapse-threshold in [0, 1], --eval-limit >= 1")
    grid.methods = expand_methods(grid.methods)
    preset = resolve_preset(grid)
    unknown = set(preset["methods"]) - set(expand_methods(["all"]))
    if unknown:
        raise ObliviateError(f"--set names unknown lm method {sorted(unknown)[0]!r}")
    for m in grid.methods:
        create(m, **preset["methods"].get(m, {}))
    Recipe.from_dict(preset["recipe"])
    spec = model_spec(grid, preset)
    spec.check()
    options = task_options(grid, preset)
    for forget in grid.forgets:  # builds each task once: bad specs and missing files fail here
        for f in forget_specs(grid.task, forget, **options):
            make_task(grid.task, f, seed=grid.seeds[0], **options)
    return preset


def model_spec(grid: LMGrid, preset: dict) -> ModelSpec:
    try:
        return ModelSpec(name=grid.model, gguf_file=grid.gguf_file, **preset["model"])
    except TypeError as e:
        raise ObliviateError(f"--set model.*: {e}") from None


def task_options(grid: LMGrid, preset: dict) -> dict:
    options = dict(preset["task"])
    if grid.task == "jsonl":
        options["data_root"] = grid.data_root
    elif grid.data_root:
        raise ObliviateError(f"--data-root is for the jsonl task, not {grid.task}")
    return options


def run_grid(grid: LMGrid, log=print) -> RunStore:
    """Run (or resume) a grid; returns its run store. The table is written at the end."""
    preset = validate(grid)
    store = RunStore(grid.directory)
    atomic_write_json(grid.directory / "grid.json", {**asdict(grid), "preset": preset})
    loop = Loop(cpu=grid.cpu, progress=grid.progress)
    recipe = Recipe.from_dict(preset["recipe"])
    spec = model_spec(grid, preset)
    options = task_options(grid, preset)
    cache = LMCache()
    for seed in grid.seeds:
        for group in grid.forgets:
            chain: Dict[str, object] = {}  # sustainability: each method's model after the previous request
            for forget in forget_specs(grid.task, group, **options):
                context = {"family": "text", "dataset": grid.task, "model": grid.model_label, "forget": forget,
                           "seed": seed}
                todo = [m for m in [*REFERENCES, *grid.methods] if not store.has(run_id(context, m))]
                if not todo:
                    continue
                task = make_task(grid.task, forget, seed=seed, **options)
                target, tokenizer, t_target = train_reference("target", task, spec, recipe, loop, cache)
                gold, gold_tok, t_gold = train_reference("gold", task, spec, recipe, loop, cache)
                context.update(n_forget=len(task.forget_examples), n_retain=len(task.retain_examples),
                               n_holdout=len(task.holdout_examples), recipe=asdict(recipe), model_spec=spec.key(),
                               gold_seconds=t_gold, lora=grid.lora)
                evaluator = Evaluator(task, loop, grid.eval_limit)
                evaluator.gold = with_self_reference(evaluator(gold, gold_tok))
                target_metrics = evaluator(target, tokenizer)
                utility = target_metrics["utility"]
                for role, metrics, secs in (("target", target_metrics, t_target), ("gold", evaluator.gold, t_gold)):
                    if role in todo:
                        store.write_row(reference_row(role, metrics, secs, context, utility, grid.collapse_threshold))
                for m in grid.methods:
                    if m not in todo:
                        chain[m] = None  # finished earlier: a later sustainability request replays the chain
                        continue
                    start_model = target
                    if task.previous_requests:
                        start_model = chain.get(m) or replay_requests(m, preset, target, tokenizer, task, loop, recipe,
                                                                      grid.lora)
                    if start_model is None:
                        row = base_row(context, method=m, params=preset["methods"].get(m, {}))
                        row.update(status="failed", error="an earlier sustainability request failed for this method")
                        model = None
                    else:
                        row, model = run_method(m, preset["methods"].get(m, {}), start_model, tokenizer, task, loop,
                                                recipe, evaluator, context, utility, grid.lora,
                                                grid.eval_every_epoch, grid.collapse_threshold)
                    row["request"] = len(task.previous_requests) + 1
                    store.write_row(row)
                    chain[m] = model
                    if row["status"] != "ok":
                        log(f"  {m} failed on seed {seed} {forget}: {row['error']}")
    write_tables(store)
    return store


# -------------------------------------------------------------------------------------------------------- tables

SIX_WAY = ["verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mink_auc", "forget_quality", "model_utility",
           "truth_ratio_f", "utility_ratio", "seconds"]


def _fmt(values: List[float]) -> str:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(a) == 0:
        return "–"
    mean = a.mean()
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    return f"{mean:.{digits}f} ± {a.std():.{digits}f}" if len(a) > 1 else f"{mean:.{digits}f}"


def _value(row: dict, key: str):
    if key == "utility_ratio":
        return row.get("utility_ratio")
    v = row["metrics"].get(key)
    return v if isinstance(v, (int, float)) else None


def tables_markdown(rows: List[dict]) -> str:
    groups: Dict[str, Dict[str, List[dict]]] = {}
    for r in rows:
        if r.get("status") == "ok":
            groups.setdefault(r["forget"], {}).setdefault(r["method"], []).append(r)
    parts = []
    for forget in sorted(groups, key=_spec_order):
        by_method = groups[forget]
        metrics = [k for k in SIX_WAY if any(_value(r, k) is not None for rs in by_method.values() for r in rs)]
        first = next(iter(by_method.values()))[0]
        seeds = sorted({r["seed"] for rs in by_method.values() for r in rs})
        parts.append(f"## {first['dataset']} / {first['model']} / {forget} (seeds {', '.join(map(str, seeds))})\n")
        parts.append("| method | " + " | ".join(metrics) + " | collapsed |")
        parts.append("|" + "---|" * (len(metrics) + 2))
        order = [m for m in REFERENCES if m in by_method] + sorted(m for m in by_method if m not in REFERENCES)
        for m in order:
            rs = by_method[m]
            cells = [_fmt([_value(r, k) for r in rs]) for k in metrics]
            flags = sum(bool(r.get("collapsed")) for r in rs)
            parts.append(f"| {m} | " + " | ".join(cells) + f" | {flags}/{len(rs)} |")
        parts.append("")
    for kind, title in (("scale", "Scalability: forget sets of growing size"),
                        ("sustain", "Sustainability: requests applied one after another")):
        parts += series_table(groups, kind, title)
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        parts.append("## Failed runs\n")
        parts.extend(f"- {r['run_id']}: {r.get('error', '')}" for r in failed)
    return "\n".join(parts) + "\n"


def series_table(groups: Dict[str, Dict[str, List[dict]]], kind: str, title: str) -> List[str]:
    """Method x step table of "verbmem_f / privleak / utility_ratio" for the scaleK or sustainK specs of a grid."""
    steps = sorted((f for f in groups if _spec_order(f)[0] == kind and _spec_order(f)[1] > 0), key=_spec_order)
    if not steps:
        return []
    methods = sorted({m for f in steps for m in groups[f]},
                     key=lambda m: (REFERENCES.index(m) if m in REFERENCES else len(REFERENCES), m))
    keys = ("verbmem_f", "privleak", "utility_ratio")
    out = [f"## {title}\n", f"Each cell: {' / '.join(keys)}.\n",
           "| method | " + " | ".join(steps) + " |", "|" + "---|" * (len(steps) + 1)]
    for m in methods:
        cells = []
        for f in steps:
            rs = groups[f].get(m, [])
            cells.append(" / ".join(_fmt([_value(r, k) for r in rs]) for k in keys)
                         if rs else "–")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def _spec_order(spec: str):
    import re
    m = re.fullmatch(r"([a-z]+?)(\d*)", spec)
    return (m.group(1), int(m.group(2) or 0)) if m else (spec, 0)


LEGEND = ("verbmem_f, knowmem_f: ROUGE-L F1 on the forget set (lower = more forgotten; compare with gold). "
          "knowmem_r: on the retain set (utility). privleak: MUSE's PrivLeak on Min-K% (0 ideal, negative = "
          "under-unlearning). forget_quality: TOFU's KS-test p-value against the gold model (higher is better). "
          "model_utility: TOFU's harmonic mean on the retain set. utility_ratio: retain utility / the target's; a run "
          "below the collapse threshold is flagged as collapsed.\n\n")


def write_tables(store: RunStore) -> str:
    text = "# Results\n\n" + LEGEND + tables_markdown(store.rows())
    store.write_text("table.md", text)
    return text


__all__ = ["LMGrid", "run_grid", "validate", "write_tables", "tables_markdown",
           "TINY_PRESET"]
