"""CLIP-style models on the grid engine: per (seed, forget spec) the original model (zero-shot CLIP, no prompt) and
then each method, evaluated by Mem, For, H and per-domain accuracy.

The configuration every row id hashes: the dataset (and its data root), the model (the tiny CLIP's config and
pre-training recipe, or a local folder's path and file digest), the shots per (class, domain), and per cell the
few-shot draw's hash. ``--forget each`` stands for one cell per domain (the paper averages over every choice of forget
domain). Besides the registered methods, the paper's ablation rows are named variants of ``adu``:
``adu+instapg`` (InstaPG, no Domain Disentangling Loss) and ``adu+ddl`` (the loss, no InstaPG); ``ablation`` expands
to ``domain-baseline, adu+instapg, adu+ddl, adu``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import ObliviateError
from ..grid import Cell, Family
from .data import load_source, make_task, parse_forget

VARIANTS = {"adu+instapg": ("adu", {"ddl_ce": False, "ddl_mmd": False}),
            "adu+ddl": ("adu", {"instapg": False})}
ABLATION = ["domain-baseline", "adu+instapg", "adu+ddl", "adu"]


def base_method(name: str):
    """(registered method, fixed hyperparameters) of a method or variant name."""
    return VARIANTS.get(name, (name, {}))


@dataclass
class VlmFamily(Family):
    """Settings of a vision-language grid (everything but the engine's methods x seeds x forgets)."""
    dataset: str = "domain-mnist"
    model: str = "tiny-clip"
    data_root: Optional[str] = None
    shots: int = 8
    overrides: List[str] = field(default_factory=list)
    cpu: bool = False
    progress: bool = True
    retrain_corrupt: bool = False

    name = "vlm"
    references = ("original",)

    @property
    def model_label(self) -> str:
        return self.model if self.model == "tiny-clip" else Path(self.model).name or "model"

    def label(self, common: dict):
        return self.dataset, self.model_label

    # ------------------------------------------------------------------------------------------ settings
    def overrides_for(self, method: str) -> dict:
        from ..presets import apply_overrides
        methods = apply_overrides({"methods": {}}, self.overrides, sections=(), example="adu.gamma=10")["methods"]
        base, _ = base_method(method)
        return {**methods.get(base, {}), **methods.get(method, {})}

    def resolve(self) -> dict:
        from .data import DATASETS
        from .methods import METHODS
        from .run import check_model
        DATASETS.get(self.dataset)
        if self.shots < 1:
            raise ObliviateError("--shots must be at least 1")
        from ..presets import apply_overrides
        named = apply_overrides({"methods": {}}, self.overrides, sections=(), example="adu.gamma=10")["methods"]
        unknown = sorted(n for n in named if n not in METHODS and n not in VARIANTS)
        if unknown:
            raise ObliviateError(f"--set names unknown vlm method {unknown[0]!r}; methods: "
                                 f"{', '.join(METHODS.names() + sorted(VARIANTS))}")
        model = check_model(self.model)
        self._source = load_source(self.dataset, self.data_root)  # missing files are reported here, before any work
        return {"dataset": self.dataset, "data_root": str(Path(self.data_root).resolve()) if self.data_root else None,
                "model": self.model_label, "model_spec": model, "shots": self.shots,
                "domains": list(self._source.domain_names), "num_classes": len(self._source.class_names)}

    def source(self):
        if not hasattr(self, "_source"):
            self.resolve()
        return self._source

    def expand_methods(self, names: List[str]) -> List[str]:
        from .methods import METHODS
        out = []
        for item in names:
            for part in (p.strip() for p in item.split(",")):
                if part == "ablation":
                    out += ABLATION
                elif part in VARIANTS:
                    out.append(part)
                elif part:
                    out += METHODS.expand([part])
        return list(dict.fromkeys(out))

    def method_params(self, method: str, forget: str) -> dict:
        from .methods import create
        base, fixed = base_method(method)
        m = create(base, **{**self.overrides_for(method), **fixed})
        kind = parse_forget(forget, self.source().domain_names, len(self.source().class_names)).kind
        if kind not in m.forget_kinds:
            raise ObliviateError(f"{method} does not take {kind} forget specs ({forget}); choose methods for it with "
                                 f"--methods (bbf takes class:C and domain:NAME)")
        return m.params()

    def expand_forgets(self, forget: str) -> List[str]:
        src = self.source()
        if forget == "each":
            return [f"domain:{d}" for d in src.domain_names]
        parse_forget(forget, src.domain_names, len(src.class_names))
        return [forget]

    # ------------------------------------------------------------------------------------------ cells
    def cell_identity(self, seed: int, forget: str) -> dict:
        return make_task(self.source(), forget, seed=seed, shots=self.shots).identity()

    def open_cell(self, seed: int, forget: str) -> "VlmCell":
        from ..loop import Loop
        from .run import load_model
        loop = Loop(cpu=self.cpu, progress=self.progress)
        clip, seconds = load_model(self.model, loop, self.retrain_corrupt)
        task = make_task(self.source(), forget, seed=seed, shots=self.shots)
        return VlmCell(task=task, loop=loop, clip=clip, t_original=seconds)

    def write_tables(self, store, rows: List[dict]) -> None:
        from .tables import write_tables
        write_tables(store, rows)


@dataclass
class VlmCell(Cell):
    task: object
    loop: object
    clip: object
    t_original: float = 0.0

    @staticmethod
    def _features(artifacts: Path) -> Path:
        return Path(str(artifacts) + ".npz")

    def reference(self, role: str, artifacts: Path) -> dict:
        from .run import reference_payload
        payload = reference_payload(self.clip, self.task, self.loop, self.t_original, self._features(artifacts))
        return {**payload, "task": self.task.identity()}

    def run(self, method: str, params: dict, artifacts: Path) -> dict:
        from .run import method_payload
        base, _ = base_method(method)
        payload = method_payload(base, params, self.clip, self.task, self.loop, self._features(artifacts))
        return {**payload, "task": self.task.identity()}
