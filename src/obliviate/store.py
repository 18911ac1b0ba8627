"""Run directories, atomic writes, safetensors checkpoints, result rows and the model cache.

Every file is written to a temporary name in the same folder and renamed into place, so an interrupted run never leaves
a half-written file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from safetensors.torch import load_model as _st_load_model
from safetensors.torch import save_model as _st_save_model

from .errors import ObliviateError

STALE_TMP_SECONDS = 600  # a temporary file older than this belongs to a run that died: it is removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0666 minus the user's umask (mkstemp alone gives 0600)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` would give: 0777 minus the user's umask (mkdtemp alone gives 0700)."""
    return 0o777 & ~_umask()


def default_cache_dir() -> Path:
    """Where original and gold models are cached: $OBLIVIATE_CACHE, else ./.cache/obliviate."""
    return Path(os.environ.get("OBLIVIATE_CACHE", Path.cwd() / ".cache" / "obliviate"))


def _atomic(path: Path, write: Callable[[str], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _file_mode())
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return _atomic(path, write)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return _atomic(path, write)


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save a model's weights as safetensors, atomically."""
    return _atomic(path, lambda tmp: _st_save_model(model, tmp))


def load_checkpoint(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Load safetensors weights into ``model`` (strict); never unpickles anything."""
    try:
        missing, unexpected = _st_load_model(model, str(path), strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"checkpoint {path} does not fit the model: {str(e).splitlines()[0]}") from None
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    return model


def config_hash(config: Any, length: int = 16) -> str:
    """A stable hash of a JSON-able configuration (dict keys sorted)."""
    text = json.dumps(config, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def ensure_writable_dir(directory: Path, what: str) -> Path:
    """Create ``directory`` if needed and prove it writable (a probe file), before any work; one-line errors."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise ObliviateError(f"cannot use {directory} as the {what}: a file stands where a folder is needed") from None
    except OSError as e:
        raise ObliviateError(f"cannot write to the {what} {directory}: {e.strerror}") from None
    return directory


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CorruptCheckpointError(ObliviateError):
    """A cached checkpoint's bytes no longer match the sha256 recorded when it was written."""


def verify_files(folder_or_file: Path, checksums: dict, meta_path: Path) -> None:
    """Check files against ``checksums`` ({relative name: sha256}); raise :class:`CorruptCheckpointError` naming the
    first file that is missing or differs."""
    base = Path(folder_or_file)
    for name, digest in sorted(checksums.items()):
        path = base / name if base.is_dir() else base
        if not path.is_file() or sha256_file(path) != digest:
            raise CorruptCheckpointError(
                f"checkpoint {path} is damaged (its sha256 does not match {meta_path.name}); delete it or rerun with "
                f"--retrain-corrupt to train it again")


class ModelCache:
    """Cache of trained models keyed by a hash of (data, spec, seed, model, recipe).

    ``get_or_train(key, build, train)`` returns a cached model when one exists, else trains, saves and returns it.
    Every checkpoint's sha256 is stored in its metadata and checked on load: a damaged file is an error naming it
    (``retrain_corrupt=True``: it is trained again instead). A checkpoint without a recorded checksum is never trusted.
    """

    def __init__(self, root: Path | None = None, retrain_corrupt: bool = False):
        self.root = Path(root) if root is not None else default_cache_dir() / "models"
        self.retrain_corrupt = retrain_corrupt

    def path(self, key: dict) -> Path:
        return self.root / f"{key.get('role', 'model')}-{config_hash(key)}.safetensors"

    def cached(self, key: dict) -> Optional[dict]:
        """The metadata of a verified checkpoint for ``key``, or None when there is none (or it was damaged and
        ``retrain_corrupt`` is set)."""
        path = self.path(key)
        return _verified_meta(path, path.with_suffix(".json"), {path.name: None}, self.retrain_corrupt)

    def get_or_train(self, key: dict, build: Callable[[], torch.nn.Module], train: Callable[[torch.nn.Module], torch.nn.Module]):
        """Return (model, seconds_spent_training); seconds is the cached training time when the model came from cache."""
        path = self.path(key)
        model = build()
        meta = self.cached(key)
        if meta is not None:
            load_checkpoint(model, path)
            return model, float(meta.get("seconds", float("nan")))
        start = time.perf_counter()
        model = train(model)
        seconds = time.perf_counter() - start
        save_checkpoint(model, path)
        atomic_write_json(path.with_suffix(".json"), {"key": key, "seconds": seconds,
                                                      "sha256": {path.name: sha256_file(path)}})
        return model, seconds


def _verified_meta(target: Path, meta_path: Path, expected_names: dict, retrain_corrupt: bool) -> Optional[dict]:
    """Read ``meta_path`` and verify the checksums it records for ``target`` (a file or a folder)."""
    if not (target.exists() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        checksums = meta["sha256"]
        if not isinstance(checksums, dict) or not checksums or any(n not in checksums for n in expected_names):
            raise KeyError("sha256")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return None  # half-written or from a version that kept no checksum: train again, never trust it
    try:
        verify_files(target, checksums, meta_path)
    except CorruptCheckpointError:
        if retrain_corrupt:
            print(f"obliviate: {target} is damaged; training it again (--retrain-corrupt)", file=sys.stderr)
            return None
        raise
    return meta


ROW_KEYS = ("run_id", "family", "method", "seed", "forget", "status", "config_hash")  # rows of older versions lack config_hash
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}")


def check_run_name(name: str) -> str:
    """A run directory name stays one plain folder inside the runs folder: no separators, no ``..``, not empty."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ObliviateError(f"run name {name!r}: use letters, digits and . _ = + - (up to 128 characters, starting "
                             f"with a letter or digit, no '/' or '..'), e.g. --name my-grid")
    return name


class RunStore:
    """A run directory ``runs/<name>/``: one JSON row per run under rows/, plus tables and reports beside them.

    Rows are validated when read: a file that is not a complete row (truncated, empty, edited by hand, or whose id does
    not match its name) is named on stderr and moved to ``rows/damaged/``, so its run is done again."""

    def __init__(self, root: Path, warn=None):
        self.root = Path(root)
        self.rows_dir = self.root / "rows"
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr))

    def row_path(self, run_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in run_id)
        return self.rows_dir / f"{safe}.json"

    def load_row(self, run_id: str) -> Optional[dict]:
        """The valid row with this id, or None (a damaged file is moved aside)."""
        return self._load(self.row_path(run_id))

    def has(self, run_id: str) -> bool:
        return self.load_row(run_id) is not None

    def write_row(self, row: dict) -> Path:
        return atomic_write_json(self.row_path(row["run_id"]), row)

    def _load(self, path: Path) -> Optional[dict]:
        if not path.is_file():
            return None
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
            problem = _row_problem(row, path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            problem = f"not valid JSON ({e.__class__.__name__})"
        except OSError as e:
            raise ObliviateError(f"cannot read {path}: {e.strerror}") from None
        if problem is None:
            return row
        self.quarantine(path, problem)
        return None

    def quarantine(self, path: Path, problem: str) -> None:
        target = self.rows_dir / "damaged" / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return  # another process moved it first
        self.warn(f"obliviate: damaged row {path} ({problem}); moved to {target}, its run will be done again")

    def rows(self) -> list[dict]:
        out = []
        if self.rows_dir.exists():
            for p in sorted(self.rows_dir.glob("*.json")):
                row = self._load(p)
                if row is not None:
                    out.append(row)
        return out

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.root / name, text)

    def clean_stale(self) -> int:
        """Remove temporary files left by runs that died (older than :data:`STALE_TMP_SECONDS`)."""
        return clean_stale_tmp(self.root)


def _row_problem(row, path: Path) -> Optional[str]:
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [k for k in ROW_KEYS if k not in row]
    if missing:
        return f"missing {missing[0]!r}"
    if row["status"] not in ("ok", "failed"):
        return f"unknown status {row['status']!r}"
    if row["status"] == "ok" and not isinstance(row.get("metrics"), dict):
        return "an ok row without metrics"
    if not isinstance(row["run_id"], str) or RunStore(path.parent.parent).row_path(row["run_id"]).name != path.name:
        return f"its run_id {row['run_id']!r} does not match the file name"
    return None


def clean_stale_tmp(root: Path, age: float = STALE_TMP_SECONDS) -> int:
    """Delete ``.*.tmp`` files under ``root`` older than ``age`` seconds (left by interrupted writes)."""
    root = Path(root)
    if not root.is_dir():
        return 0
    now, removed = time.time(), 0
    for p in root.rglob(".*.tmp"):
        try:
            if now - p.stat().st_mtime > age:
                if p.is_dir():
                    import shutil
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows))
