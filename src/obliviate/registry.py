"""Name -> class registries for methods, datasets and models."""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Iterator

from .errors import ObliviateError


class Registry:
    """A named table of factories. ``@REG.register("name")`` adds one; ``REG.get(name)`` looks it up."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable] = {}

    def register(self, name: str):
        def add(obj):
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj
        return add

    def register_method(self, cls):
        """Class decorator for methods: register ``cls`` under ``cls.name``; it must cite its paper."""
        if not cls.name or not cls.paper or not cls.__doc__:
            raise TypeError(f"{cls.__name__} needs a name, a paper citation and a docstring")
        return self.register(cls.name)(cls)

    def get(self, name: str) -> Callable:
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ObliviateError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def create(self, name: str, **kwargs):
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self):
        return sorted(self._items.items())

    def expand(self, names) -> list[str]:
        """Names from a CLI list: each item may be a comma list; ``all`` means every registered name. Checked."""
        out = []
        for item in names:
            for part in (p.strip() for p in item.split(",")):
                if part == "all":
                    out.extend(self.names())
                elif part:
                    self.get(part)  # raises, listing the known names
                    out.append(part)
        return list(dict.fromkeys(out))

    def instantiate(self, name: str, **hyperparameters):
        """Build a registered dataclass; unknown hyperparameters are an error listing the known ones, values from the
        command line are converted to each field's declared type, and ranges are checked (see ``config.py``)."""
        from .config import typed_fields
        cls = self.get(name)
        return cls(**typed_fields(cls, hyperparameters, name, noun="hyperparameter"))


def fields_from_dict(cls, values, what: str):
    """Build dataclass ``cls`` from a dict (recipes, configurations): typed, range-checked, unknown keys named."""
    from .config import build
    return build(cls, values, what)
