"""Hyperparameter presets per (dataset, model), shipped as YAML in obliviate/presets/.

A preset holds ``dataset`` (source arguments), ``model`` (model arguments), ``recipe`` (training of original and gold)
and ``methods`` (hyperparameters per method). ``default.yaml`` fills what a specific file does not set.
Overrides use dotted keys: ``lotus.alpha=4`` (a method), ``recipe.epochs=30``, ``model.width=32``, ``dataset.num_samples=4000``.
"""
from __future__ import annotations

from importlib import resources
from typing import Iterable

import yaml

from .errors import ObliviateError

SECTIONS = ("dataset", "model", "recipe", "methods")


def _read(name: str) -> dict:
    path = resources.files("obliviate") / "presets" / name
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def load_preset(dataset: str, model: str, forget_kind: str | None = None) -> dict:
    """The merged preset for (dataset, model): ``default.yaml``, then ``DATASET-MODEL.yaml``, then (for a forget kind
    such as ``class``) ``DATASET-MODEL-KIND.yaml``, each overriding what the previous one set."""
    out = {k: {} for k in SECTIONS}
    names = ["default.yaml", f"{dataset}-{model}.yaml"] + ([f"{dataset}-{model}-{forget_kind}.yaml"] if forget_kind else [])
    for name in names:
        for section, values in _read(name).items():
            if section not in SECTIONS:
                raise ObliviateError(f"preset {name}: unknown section {section!r}")
            if section == "methods":
                for method, hp in (values or {}).items():
                    out["methods"].setdefault(method, {}).update(hp or {})
            else:
                out[section].update(values or {})
    return out


def method_sources(dataset: str, model: str, forget_kind: str | None, method: str,
                   overrides: Iterable[str] = ()) -> str:
    """Which preset files set ``method``'s hyperparameters for (dataset, model, forget kind), most specific last, e.g.
    ``digits-cnn.yaml+digits-cnn-class.yaml``; ``+--set`` when an override names the method; ``defaults`` when none
    does (the method's own defaults)."""
    names = ["default.yaml", f"{dataset}-{model}.yaml"] + ([f"{dataset}-{model}-{forget_kind}.yaml"] if forget_kind else [])
    used = [n for n in names if method in ((_read(n).get("methods") or {}))]
    if any(str(o).split(".", 1)[0] == method for o in overrides or ()):
        used.append("--set")
    return "+".join(used) if used else "defaults"


def apply_overrides(preset: dict, overrides: Iterable[str], sections=("dataset", "model", "recipe"),
                    example: str = "lotus.alpha=4 or recipe.epochs=30") -> dict:
    """Apply ``key.sub=value`` strings; a first key that is not one of ``sections`` names a method."""
    for item in overrides or ():
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ObliviateError(f"--set {item!r}: expected NAME.KEY=VALUE, e.g. {example}")
        key, value = item.split("=", 1)
        head, sub = key.split(".", 1)
        parsed = yaml.safe_load(value) if value.strip() else value
        if head in sections:
            preset[head][sub] = parsed
        else:
            preset["methods"].setdefault(head, {})[sub] = parsed
    return preset
