"""What every unlearning method shares, in both families: hyperparameters as dataclass fields, checked on creation."""
from __future__ import annotations

import abc
import dataclasses

from .errors import ObliviateError


class HyperparameterMethod(abc.ABC):
    """Base of the families' ``Method`` dataclasses: ``params()`` for result rows, and NaN fields rejected up front."""

    def params(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self):
        from .config import check_dataclass
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v != v:
                raise ObliviateError(f"{self.name}: {f.name} is NaN")
        check_dataclass(self, self.name)
