"""One grid engine for every family: methods x seeds x forget specs, run locally or as Ray tasks, on one run store.

A family (classifiers, language models, CLIP-style models) supplies a :class:`Family`: it checks its settings, names
the reference models of a cell (original/gold, target/gold), trains or loads them, runs one method, and draws its
tables. The engine owns everything a row promises:

- **identity**: a row's id ends in a hash of its full resolved configuration (the family's common settings and the
  thread count, the cell's data -- e.g. a hash of the forget set's indices, or of a language-model task's evaluation
  items -- the seed, the method and its resolved hyperparameters), so a changed
  setting is a new row and never the old one handed back;
- **resume and retries**: finished rows are kept, failed rows are retried (``retry_failed=False`` keeps them),
  damaged rows are moved aside and redone;
- **honest timing**: one-off imports and warm-ups are paid before any clock starts; the torch thread count is set
  explicitly and recorded with the determinism settings;
- **execution**: in this process, or one Ray task per cell (:mod:`obliviate.executors`); concurrent grids on the same
  directory take a lock per cell, so no run is done twice.
"""
from __future__ import annotations

import abc
import contextlib
import copy
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .config import flatten
from .errors import ObliviateError
from .store import CorruptCheckpointError, RunStore, atomic_write_json, check_run_name, config_hash

HASH_LENGTH = 10


# ------------------------------------------------------------------------------------------------ family interface

class Cell(abc.ABC):
    """One (seed, forget spec) with its reference models trained or loaded."""

    @abc.abstractmethod
    def reference(self, role: str, artifacts: Path) -> dict:
        """Row payload of a reference model: ``{"metrics": {...}, "seconds": ...}`` and anything else to record.
        ``artifacts`` is a path prefix (``runs/NAME/artifacts/<row file stem>``) for per-run files."""

    @abc.abstractmethod
    def run(self, method: str, params: dict, artifacts: Path) -> dict:
        """Row payload of one method run; raises on failure (the engine records a failed row and goes on)."""


class Family(abc.ABC):
    """What a model family supplies to the engine. Instances are plain settings (picklable for Ray)."""

    name: str = ""
    references: Tuple[str, ...] = ()

    @abc.abstractmethod
    def resolve(self) -> dict:
        """Check every setting before any work; return the resolved configuration shared by every cell (JSON-able).
        Must include ``dataset`` and ``model`` (labels used in run ids)."""

    @abc.abstractmethod
    def expand_methods(self, names: List[str]) -> List[str]:
        """Method names from the command line (comma lists, ``all``), checked."""

    @abc.abstractmethod
    def method_params(self, method: str, forget: str) -> dict:
        """The method's full resolved hyperparameters for a forget spec (defaults filled in)."""

    def method_source(self, method: str, forget: str) -> Optional[str]:
        """Where the method's hyperparameters for this forget spec come from (e.g. preset file names), recorded in
        each row as ``preset``; None when the family has no such notion."""
        return None

    def expand_forgets(self, forget: str) -> List[str]:
        """A user's forget spec as the cell specs it stands for (a series may stand for several)."""
        return [forget]

    @abc.abstractmethod
    def cell_identity(self, seed: int, forget: str) -> dict:
        """What fixes a cell's data, cheaply (e.g. a hash of the forget set's indices and the set sizes)."""

    @abc.abstractmethod
    def open_cell(self, seed: int, forget: str) -> Cell:
        """Train or load the cell's reference models."""

    @abc.abstractmethod
    def write_tables(self, store: RunStore, rows: List[dict]) -> None:
        """Draw tables (and reports) from rows only."""

    def _settings(self) -> dict:
        """What ``resolve()`` prepared for the family's own use (``self._resolved``), resolving on first call (e.g. in a
        Ray worker that received the settings alone)."""
        if not hasattr(self, "_resolved"):
            self.resolve()
        return self._resolved

    def label(self, common: dict) -> Tuple[str, str]:
        """(dataset, model) labels for run ids."""
        return str(common["dataset"]), str(common["model"])


# --------------------------------------------------------------------------------------------------- grid options

@dataclass
class GridOptions:
    """Family-neutral settings of one grid invocation."""
    methods: List[str] = field(default_factory=lambda: ["all"])
    seeds: List[int] = field(default_factory=lambda: [0])
    forgets: List[str] = field(default_factory=list)
    name: str = "default"
    root: str = "runs"
    retry_failed: bool = True
    threads: int = 2                   # torch intra-op threads: fixed and recorded (timings and bit-identical rows)
    executor: str = "local"            # local | ray
    ray_address: Optional[str] = None  # None: start a local Ray instance
    mlflow: Optional[str] = None       # tracking URI to mirror every new row to
    progress: bool = True

    @property
    def directory(self) -> Path:
        return Path(self.root) / self.name

    def check(self) -> None:
        check_run_name(self.name)
        if not self.seeds:
            raise ObliviateError("give at least one seed (--seeds N with N >= 1)")
        bad = [s for s in self.seeds if not isinstance(s, int) or isinstance(s, bool) or s < 0]
        if bad:
            raise ObliviateError(f"seed {bad[0]!r}: seeds must be integers >= 0")
        if not self.forgets:
            raise ObliviateError("give at least one forget spec")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ObliviateError(f"--threads {self.threads!r}: must be an integer >= 1")
        if self.executor not in ("local", "ray"):
            raise ObliviateError(f"--executor {self.executor!r}: use local or ray")
        if self.ray_address and self.executor != "ray":
            raise ObliviateError("--ray-address needs --executor ray")
        if self.executor == "ray":
            from .executors import _ray
            _ray()
        if self.mlflow:
            from .executors import check_mlflow
            check_mlflow(self.mlflow)


# The command line's form of GridOptions, declared once for every command module (layer 4): each family's parser adds
# its own options and takes these by flag, in the order its --help lists them, adapting a help text or a default.
GRID_ARGUMENTS: Dict[str, dict] = {
    "--set": dict(dest="overrides", action="append", default=[], metavar="NAME.KEY=VALUE"),
    "--methods": dict(nargs="+", default=["all"], help="method names, comma lists, or `all`"),
    "--method": dict(help="unlearning method (see `obliviate methods`)"),
    "--seeds": dict(type=int, default=1, help="number of seeds (0..N-1)"),
    "--seed": dict(type=int, default=0),
    "--name": dict(default=None),
    "--json": dict(action="store_true", help="print the result row as one JSON object on stdout"),
    "--runs": dict(default="runs", help="folder that holds run directories"),
    "--cpu": dict(action="store_true", help="use the CPU even if an accelerator is available"),
    "--no-progress": dict(action="store_true", help="hide progress bars"),
    "--threads": dict(type=int, default=2, help="torch CPU threads (fixed, and recorded in every row, so timings and "
                                                "results are comparable)"),
    "--no-retry-failed": dict(dest="retry_failed", action="store_false",
                              help="keep failed rows instead of running them again"),
    "--retrain-corrupt": dict(action="store_true",
                              help="train a cached reference model again when its checkpoint fails its sha256 check "
                                   "(default: stop with an error naming the file)"),
    "--executor": dict(default="local", choices=["local", "ray"],
                       help="run cells in this process, or one Ray task per cell (extra obliviate[ray])"),
    "--ray-address": dict(default=None, help="address of a running Ray cluster (default: start a local one); the runs "
                                             "and cache folders must be on a filesystem every node shares"),
    "--mlflow": dict(default=None, metavar="URI", help="mirror every new row to this MLflow tracking URI, e.g. "
                                                       "file:./mlruns (extra obliviate[mlflow])"),
}
# the engine's own settings (every family's bench and unlearn)
ENGINE_ARGUMENTS = ("--threads", "--no-retry-failed", "--retrain-corrupt", "--executor", "--ray-address", "--mlflow")


def add_grid_arguments(parser, *flags: str, **changes: dict) -> None:
    """Add the common options ``flags`` to an argparse parser, in this order, as :data:`GRID_ARGUMENTS` declares
    them; without flags: ``--runs``, ``--cpu``, ``--no-progress`` and :data:`ENGINE_ARGUMENTS`. ``changes`` adapts
    one to a command by its flag without dashes, e.g. ``name={"help": "run directory name (None: lm-TASK)"}``."""
    for flag in flags or ("--runs", "--cpu", "--no-progress") + ENGINE_ARGUMENTS:
        declared = copy.deepcopy(GRID_ARGUMENTS[flag])  # fresh defaults per parser: no list is shared
        declared.update(changes.pop(flag.lstrip("-").replace("-", "_"), {}))
        parser.add_argument(flag, **declared)
    if changes:
        raise TypeError(f"add_grid_arguments: changes for options not added: {sorted(changes)}")


def grid_options_from_args(args, forgets, methods, seeds, name) -> GridOptions:
    """The GridOptions of a command whose parser has the options of :func:`add_grid_arguments`."""
    return GridOptions(methods=methods, seeds=seeds, forgets=forgets, name=name, root=args.runs,
                       retry_failed=args.retry_failed, threads=args.threads, executor=args.executor,
                       ray_address=args.ray_address, mlflow=args.mlflow, progress=not args.no_progress)


# ---------------------------------------------------------------------------------------------------------- plan

@dataclass
class Job:
    role: str           # a reference role or a method name
    run_id: str
    params: dict
    reference: bool


@dataclass
class CellPlan:
    seed: int
    forget: str
    identity: dict
    jobs: List[Job]


@dataclass
class Plan:
    family: Family
    options: GridOptions
    common: dict
    methods: List[str]
    cells: List[CellPlan]

    def run_id(self, seed: int, forget: str, role: str) -> str:
        for c in self.cells:
            if c.seed == seed and c.forget == forget:
                for j in c.jobs:
                    if j.role == role:
                        return j.run_id
        raise KeyError((seed, forget, role))


def make_plan(family: Family, options: GridOptions) -> Plan:
    """Check everything and compute every row id, before any work."""
    options.check()
    # the thread count is part of the configuration: CPU results differ (in the last bits) between thread counts
    common = {**family.resolve(), "threads": options.threads}
    methods = family.expand_methods(options.methods)
    if not methods:
        raise ObliviateError("give at least one method (or `all`)")
    cells = []
    for seed in options.seeds:
        for spec in options.forgets:
            for forget in family.expand_forgets(spec):
                identity = family.cell_identity(seed, forget)
                jobs = [Job(r, run_id(family, common, identity, seed, forget, r, {}), {}, True)
                        for r in family.references]
                for m in methods:
                    params = family.method_params(m, forget)
                    jobs.append(Job(m, run_id(family, common, identity, seed, forget, m, params), params, False))
                cells.append(CellPlan(seed, forget, identity, jobs))
    return Plan(family, options, common, methods, cells)


def identity_of(family: Family, common: dict, cell: dict, seed: int, method: str, params: dict) -> dict:
    return {"family": family.name, "common": common, "cell": cell, "seed": seed, "method": method, "params": params}


def run_id(family: Family, common: dict, cell: dict, seed: int, forget: str, method: str, params: dict) -> str:
    """``family_dataset_model_forget_sSEED_method_HASH``; the hash covers everything that determines the result."""
    dataset, model = family.label(common)
    digest = config_hash(identity_of(family, common, cell, seed, method, params), HASH_LENGTH)
    return f"{family.name}_{dataset}_{model}_{forget_label(forget)}_s{seed}_{method}_{digest}"


def forget_label(forget: str) -> str:
    """A forget spec as it appears in a run id (an index file by its name; its contents are in the hash)."""
    if forget.startswith("indices:"):
        return "indices-" + Path(forget.split(":", 1)[1]).stem
    return forget


# ----------------------------------------------------------------------------------------- environment for timings

_WARM = False


def configure_torch(threads: int) -> dict:
    """Set the thread count, and return what the rows record about threads and determinism."""
    import torch
    torch.set_num_threads(threads)
    return {"threads": torch.get_num_threads(), "determinism": determinism()}


def determinism() -> dict:
    import torch
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


def warm_up() -> None:
    """Pay one-off costs before any clock starts: the first optimizer step imports ``torch._dynamo`` (~2 s), the first
    backward initialises autograd's engine."""
    global _WARM
    if _WARM:
        return
    import torch
    p = torch.nn.Parameter(torch.zeros(4))
    for make in (lambda: torch.optim.SGD([p], lr=0.1, momentum=0.9), lambda: torch.optim.Adam([p]),
                 lambda: torch.optim.AdamW([p])):
        opt = make()
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()
    _WARM = True


# ------------------------------------------------------------------------------------------------------- running

@dataclass
class GridResult:
    store: RunStore
    plan: Plan
    written: List[str]


def run_grid(family: Family, options: GridOptions, log: Callable[[str], None] = print) -> GridResult:
    """Run (or resume) a grid; returns the run store, the plan (every row id) and the ids written now."""
    plan = make_plan(family, options)
    store = open_store(options.directory)
    record_configuration(store, plan)
    todo = [c for c in plan.cells if pending(store, c, options.retry_failed)]
    if options.executor == "ray":
        from .executors import run_cells_ray
        written = run_cells_ray(plan, todo, store.root, log, execute_cell)
    else:
        written = run_cells_local(plan, todo, store.root, log)
    family.write_tables(store, labelled_rows(store.rows()))
    return GridResult(store, plan, written)


def open_store(directory: Path) -> RunStore:
    """Create (or reopen) a run directory and the model cache, proving both writable before any work; stale
    temporary files are removed."""
    from .store import clean_stale_tmp, default_cache_dir, ensure_writable_dir
    ensure_writable_dir(Path(directory) / "rows", "run directory")
    clean_stale_tmp(ensure_writable_dir(default_cache_dir(), "model cache"))
    store = RunStore(directory)
    store.clean_stale()
    return store


def pending(store: RunStore, cell: CellPlan, retry_failed: bool) -> List[Job]:
    """The jobs of a cell still to run (finished rows are kept; failed ones are retried unless told otherwise)."""
    out = []
    for job in cell.jobs:
        row = store.load_row(job.run_id)
        if row is None or (row["status"] == "failed" and retry_failed):
            out.append(job)
    return out


def run_cells_local(plan: Plan, cells: List[CellPlan], root: Path, log) -> List[str]:
    from tqdm.auto import tqdm
    total = sum(len(c.jobs) for c in cells)
    bar = tqdm(total=total, desc="grid", disable=not plan.options.progress, dynamic_ncols=True)
    written = []
    try:
        for cell in cells:
            written += execute_cell(plan, cell, root, log, bar=bar)
    finally:
        bar.close()
    return written


def execute_cell(plan: Plan, cell: CellPlan, root: Path, log=print, bar=None) -> List[str]:
    """Run what is left of one cell (under a lock, so concurrent grids never do a run twice); returns the ids written.
    This is the unit of work of every executor."""
    environment = configure_torch(plan.options.threads)
    warm_up()
    store = RunStore(root)
    written: List[str] = []
    with cell_lock(store, cell):
        jobs = pending(store, cell, plan.options.retry_failed)  # another process may have finished some meanwhile
        if bar is not None:
            bar.update(len(cell.jobs) - len(jobs))
        if not jobs:
            return written
        if bar is not None:
            bar.set_description(f"grid: seed {cell.seed} {cell.forget}: reference models")
        opened = plan.family.open_cell(cell.seed, cell.forget)
        for job in jobs:
            if bar is not None:
                bar.set_description(f"grid: seed {cell.seed} {cell.forget}: {job.role}")
            row = build_row(plan, cell, job, opened, environment, artifacts_prefix(store, job.run_id))
            store.write_row(row)
            written.append(row["run_id"])
            if plan.options.mlflow:
                from .executors import mirror_to_mlflow
                mirror_to_mlflow(plan.options.mlflow, store.root.name, row)
            if row["status"] != "ok":
                log(f"  {job.role} failed on seed {cell.seed} {cell.forget}: {row['error']}")
            if bar is not None:
                bar.update(1)
    return written


def artifacts_prefix(store: RunStore, run_id: str) -> Path:
    """Where a run's per-run files go: ``artifacts/<row file stem>`` plus a suffix the family chooses."""
    return store.root / "artifacts" / store.row_path(run_id).stem


def build_row(plan: Plan, cell: CellPlan, job: Job, opened: Cell, environment: dict, artifacts: Path) -> dict:
    from .rows import versions
    dataset, model = plan.family.label(plan.common)
    identity = identity_of(plan.family, plan.common, cell.identity, cell.seed, job.role, job.params)
    row = {"run_id": job.run_id, "family": plan.family.name, "dataset": dataset, "model": model,
           "forget": cell.forget, "seed": cell.seed, "method": job.role, "params": dict(job.params),
           "config_hash": config_hash(identity, HASH_LENGTH), "config": {"common": plan.common, "cell": cell.identity},
           "versions": versions(), **environment}
    source = None if job.reference else plan.family.method_source(job.role, cell.forget)
    if source is not None:
        row["preset"] = source
    try:
        payload = (opened.reference(job.role, artifacts) if job.reference
                   else opened.run(job.role, dict(job.params), artifacts))
        row.update(payload)
        row.setdefault("status", "ok")
    except CorruptCheckpointError:
        raise  # a damaged cached model is the user's to fix (or --retrain-corrupt), not a failed run
    except Exception as e:  # recorded, not raised: one failing method must not stop a grid
        row.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
    row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return row


@contextlib.contextmanager
def cell_lock(store: RunStore, cell: CellPlan):
    """An exclusive lock per cell (``fcntl.flock`` on a file in the run directory); a no-op where flock is missing."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = store.root / "locks" / f"s{cell.seed}-{config_hash({'forget': cell.forget, 'cell': cell.identity}, 16)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------- configurations

def record_configuration(store: RunStore, plan: Plan) -> None:
    """``grid.json`` lists every configuration the directory holds (merged, never replaced by the last one)."""
    path = store.root / "grid.json"
    data = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    if not isinstance(data.get("configurations"), dict):
        data = {"configurations": {}}
    key = config_hash({"family": plan.family.name, "common": plan.common}, HASH_LENGTH)
    entry = data["configurations"].setdefault(key, {"family": plan.family.name, "common": plan.common,
                                                    "methods": [], "seeds": [], "forgets": []})
    for name, values in (("methods", plan.methods), ("seeds", plan.options.seeds),
                         ("forgets", [c.forget for c in plan.cells])):
        entry[name] = list(dict.fromkeys([*entry.get(name, []), *values]))
    data["methods"] = list(dict.fromkeys([*data.get("methods", []), *plan.methods]))  # column order of reports
    atomic_write_json(path, data)


def labelled_rows(rows: List[dict]) -> List[dict]:
    """Rows ready for tables: when a directory holds several configurations, ``variant`` names the common settings
    that differ (a table per variant) and ``label`` adds the hyperparameters that differ between rows of one method
    (e.g. ``ssd [alpha=1.0]``); with one configuration both are plain."""
    commons = {}
    for r in rows:
        commons[config_hash(r.get("config", {}).get("common", {}))] = flatten(r.get("config", {}).get("common", {}))
    varying = _varying_keys(list(commons.values()))
    out = []
    for r in rows:
        r = dict(r)
        flat = flatten(r.get("config", {}).get("common", {}))
        r["variant"] = ", ".join(f"{k}={flat.get(k)}" for k in varying)
        out.append(r)
    by_method: Dict[Tuple[str, str, str], List[dict]] = {}
    for r in out:
        by_method.setdefault((r["variant"], r["forget"], r["method"]), []).append(r)
    for group in by_method.values():
        params = [flatten(r.get("params", {})) for r in group]
        keys = _varying_keys(params)
        for r, p in zip(group, params):
            r["label"] = r["method"] + (f" [{', '.join(f'{k}={p.get(k)}' for k in keys)}]" if keys else "")
    return out


def _varying_keys(dicts: List[dict]) -> List[str]:
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({json.dumps(d.get(k), sort_keys=True, default=str) for d in dicts}) > 1]


def same_rows(a: dict, b: dict) -> bool:
    """Rows equal apart from timings, timestamps and where they ran (what reproducibility promises)."""
    return strip_volatile(a) == strip_volatile(b)


VOLATILE = ("finished_at", "seconds", "gold_seconds", "eval_seconds", "versions", "traceback", "target_seconds",
            "seconds_per_epoch", "overhead_per_token")


def strip_volatile(obj):
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items()
                if k not in VOLATILE and not k.endswith(("_seconds", "_ms_per_token"))}  # timings differ run to run
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    return obj


__all__ = ["Family", "Cell", "GridOptions", "Plan", "make_plan", "run_grid", "execute_cell", "labelled_rows",
           "same_rows", "strip_volatile", "warm_up", "configure_torch", "GridResult", "GRID_ARGUMENTS",
           "ENGINE_ARGUMENTS", "add_grid_arguments", "grid_options_from_args"]
