"""Every registered method across families, for `obliviate methods`."""
from __future__ import annotations

import importlib

# (family, module holding the family's METHODS registry); a family whose extra is not installed is skipped.
FAMILIES = [("vision", "obliviate.vision.methods"), ("text", "obliviate.text.methods"),
            ("vlm", "obliviate.vlm.methods")]


def all_methods():
    for family, module in FAMILIES:
        try:
            registry = importlib.import_module(module).METHODS
        except ImportError:
            continue
        for name, cls in registry.items():
            yield family, name, cls.paper, cls.summary
