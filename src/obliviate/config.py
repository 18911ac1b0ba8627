"""Typed configuration: every setting a user can give (recipe, model, dataset, method hyperparameters) is converted to
its declared type and checked against its range before any work starts.

Types come from dataclass fields (recipes, methods) or from a factory's signature (dataset sources, model builders):
``--set recipe.lr=1e-3`` is a float even though YAML reads ``1e-3`` as a string, ``recipe.epochs=2.5`` is an error, an
unknown key lists the known ones. Ranges are rules on field names shared by every family (``epochs >= 1``,
``0 < lr``, ``batch_size >= 1``, ...), so a new method is checked without writing its own validation.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from typing import Any, Callable, Dict, Optional

from .errors import ObliviateError

# name -> (rule text, predicate). Checked for fields whose name matches exactly or ends with "_<name>".
RANGES: Dict[str, tuple] = {
    "epochs": (">= 1", lambda v: v >= 1),
    "batch_size": (">= 1", lambda v: v >= 1),
    "lr": ("> 0", lambda v: v > 0),
    "seed": (">= 0", lambda v: v >= 0),
    "momentum": ("in [0, 1)", lambda v: 0 <= v < 1),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "num_samples": (">= 10", lambda v: v >= 10),
    "max_length": (">= 2", lambda v: v >= 2),
    "width": (">= 1", lambda v: v >= 1),
    "dim": (">= 1", lambda v: v >= 1),
    "depth": (">= 1", lambda v: v >= 1),
    "patch": (">= 1", lambda v: v >= 1),
    "n_layer": (">= 1", lambda v: v >= 1),
    "n_embd": (">= 1", lambda v: v >= 1),
    "n_head": (">= 1", lambda v: v >= 1),
    "n_positions": (">= 2", lambda v: v >= 2),
    "vocab_size": (">= 16", lambda v: v >= 16),
    "steps": (">= 1", lambda v: v >= 1),
    "temperature": ("> 0", lambda v: v > 0),
    "fraction": ("in (0, 1]", lambda v: 0 < v <= 1),
}
# Fields whose name contains these words are counts of passes that may legitimately be 0 (e.g. warm-up epochs).
ZERO_OK_PREFIXES = ("warmup_", "extra_", "min_")


def _rule(name: str):
    if name.startswith(ZERO_OK_PREFIXES):
        return None
    for key, rule in RANGES.items():
        if name == key or name.endswith("_" + key):
            return rule
    return None


def check_range(name: str, value: Any, where: str) -> None:
    """Raise a one-line error when ``value`` breaks the range rule for a field called ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ObliviateError(f"{where} = {value}: must be a finite number")
    rule = _rule(name)
    if rule and not rule[1](value):
        raise ObliviateError(f"{where} = {value}: must be {rule[0]}")


def _base_type(annotation) -> Optional[type]:
    """bool / int / float / str from an annotation (``Optional[float]``, ``"int"``, ...); None when it is none of them."""
    if isinstance(annotation, str):
        text = annotation.replace("Optional[", "").replace("]", "").replace(" | None", "").strip()
        return {"bool": bool, "int": int, "float": float, "str": str}.get(text)
    if annotation in (bool, int, float, str):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1:
        return _base_type(args[0])
    return None


def convert(value: Any, annotation, where: str, default: Any = None) -> Any:
    """Convert ``value`` (a CLI/YAML value) to the declared type; the default's type stands in for a missing annotation."""
    kind = _base_type(annotation)
    if kind is None and default is not None and type(default) in (bool, int, float, str):
        kind = type(default)
    if kind is None or value is None:
        return value
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip())
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (ValueError, TypeError):
        raise ObliviateError(f"{where}: cannot read {value!r} as {kind.__name__}") from None
    return value


def typed_fields(cls, values: Optional[dict], what: str, noun: str = "setting") -> dict:
    """Convert and range-check ``values`` for dataclass ``cls``; unknown keys are an error listing the known ones."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ObliviateError(f"{what} has no {noun} {unknown[0]!r}; its {noun}s are: "
                             f"{', '.join(sorted(fields)) or '(none)'}")
    defaults = {k: (f.default if f.default is not dataclasses.MISSING else None) for k, f in fields.items()}
    return _convert_all(values, _hints(cls), {k: f.type for k, f in fields.items()}, defaults, what)


def _convert_all(values: dict, hints: dict, annotations: dict, defaults: dict, what: str) -> dict:
    out = {}
    for k, v in values.items():
        out[k] = convert(v, hints.get(k, annotations[k]), f"{what}.{k}", defaults[k])
        check_range(k, out[k], f"{what}.{k}")
    return out


def build(cls, values: Optional[dict], what: str):
    """``cls(**values)`` after :func:`typed_fields`; defaults are range-checked too."""
    obj = cls(**typed_fields(cls, values, what))
    check_dataclass(obj, what)
    return obj


def check_dataclass(obj, what: str) -> None:
    for f in dataclasses.fields(obj):
        check_range(f.name, getattr(obj, f.name), f"{what}.{f.name}")


def typed_kwargs(fn: Callable, values: Optional[dict], what: str, skip=("data_root",), positional: int = 0) -> dict:
    """Convert and range-check keyword arguments of a factory (a data source, a model builder) from its signature.

    ``positional`` leading parameters are filled by the caller (a model's input shape and class count) and are not
    settings; ``skip`` names parameters that have options of their own (``--data-root``)."""
    values = dict(values or {})
    params = list(inspect.signature(fn).parameters.values())[positional:]
    known = {p.name: p for p in params if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ObliviateError(f"{what} has no setting {unknown[0]!r}; its settings are: "
                             f"{', '.join(sorted(known)) or '(none)'}")
    defaults = {k: (None if p.default is inspect.Parameter.empty else p.default) for k, p in known.items()}
    return _convert_all(values, _hints(fn), {k: p.annotation for k, p in known.items()}, defaults, what)


def resolved_kwargs(fn: Callable, values: dict, skip=("data_root",), positional: int = 0) -> dict:
    """Every keyword argument of ``fn`` with its default filled in: what a run id must hash."""
    params = list(inspect.signature(fn).parameters.values())[positional:]
    out = {p.name: p.default for p in params
           if p.name not in skip and p.default is not inspect.Parameter.empty}
    out.update(values)
    return out


def flatten(d: dict, prefix: str = "") -> Dict[str, object]:
    """Nested dicts as one dict of dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``), the form of ``--set``."""
    out: Dict[str, object] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _hints(obj) -> dict:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # forward references that do not resolve: fall back to the raw annotations
        return {}
