"""Where a grid's cells run: Ray tasks (one per cell), and MLflow mirroring of rows. Both are optional extras.

Ray: each cell -- its reference models, then its methods -- is one task running :func:`obliviate.grid.execute_cell`
in a worker, against the same run store and model cache paths, which must lie on a filesystem every node shares. Row
ids, resume, integrity checks and per-cell locks are the same code as in a local run, so the rows are the same.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

from .config import flatten
from .errors import ObliviateError


def _ray():
    try:
        import ray
    except ImportError:
        raise ObliviateError("--executor ray needs the Ray extra: pip install 'obliviate[ray]'") from None
    return ray


def run_cells_ray(plan, cells, root: Path, log, execute_cell) -> List[str]:
    """Run ``cells`` as Ray tasks (one CPU each, ``threads`` torch threads each) through the engine's
    ``execute_cell`` (given by the engine: this module never imports it); returns the row ids written."""
    ray = _ray()
    from .store import default_cache_dir
    if not cells:
        return []
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=plan.options.ray_address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except Exception as e:  # a wrong address, a cluster that does not answer
            raise ObliviateError(f"cannot start or reach Ray ({plan.options.ray_address or 'local'}): "
                                 f"{type(e).__name__}: {e}") from None
    # Workers may start in another folder: paths travel absolute, the cache location as an environment variable.
    env = {"OBLIVIATE_CACHE": str(default_cache_dir().resolve())}
    remote = ray.remote(num_cpus=1, runtime_env={"env_vars": env})(_cell_task)
    try:
        futures = [remote.remote(plan, cell, str(Path(root).resolve()), execute_cell) for cell in cells]
        written: List[str] = []
        for ids, messages in ray.get(futures):
            written += ids
            for m in messages:
                log(m)
        return written
    finally:
        if started_here:
            ray.shutdown()


def _cell_task(plan, cell, root: str, execute_cell):
    """One cell in a Ray worker; progress bars off, messages returned to the driver."""
    plan.options.progress = False
    if hasattr(plan.family, "progress"):
        plan.family.progress = False
    messages: List[str] = []
    ids = execute_cell(plan, cell, Path(root), log=messages.append)
    return ids, messages


def _mlflow(uri: str):
    try:
        import mlflow
    except ImportError:
        raise ObliviateError("--mlflow needs the MLflow extra: pip install 'obliviate[mlflow]'") from None
    if "://" not in uri or uri.startswith("file:"):
        # a folder: MLflow's file store, which MLflow 3 keeps only on request (sqlite:///FILE.db is the alternative)
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.set_tracking_uri(uri)
    return mlflow


def check_mlflow(uri: str) -> None:
    """Reach the tracking store before any work: a wrong URI is a one-line error, not a failure after hours."""
    mlflow = _mlflow(uri)
    try:
        mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as e:
        raise ObliviateError(f"--mlflow {uri}: cannot use this tracking store: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None


def mirror_to_mlflow(uri: str, experiment: str, row: dict) -> None:
    """Log one row as an MLflow run: parameters (method hyperparameters and the flattened configuration), numeric
    metrics, and tags (status, family, run id). Mirrors only; the run store stays the source of truth."""
    mlflow = _mlflow(uri)
    mlflow.set_experiment(experiment)
    params = {f"params.{k}": v for k, v in flatten(row.get("params", {})).items()}
    params.update({f"config.{k}": v for k, v in flatten(row.get("config", {})).items()})
    params.update({"seed": row["seed"], "forget": row["forget"], "method": row["method"]})
    metrics = {k: float(v) for k, v in row.get("metrics", {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    with mlflow.start_run(run_name=row["run_id"]):
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.set_tags({"status": row["status"], "family": row["family"], "run_id": row["run_id"],
                         "config_hash": row["config_hash"]})
