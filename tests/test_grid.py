"""The grid engine: run identity, resume and retries, integrity, reproducibility, interruption, concurrency, Ray and
MLflow. Tiny settings (digits, 1-2 training epochs) keep each test to seconds."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate.cli import main
from obliviate.grid import same_rows, strip_volatile

TINY = ["--dataset", "digits", "--set", "recipe.epochs=1", "--set", "model.width=8", "--set", "finetune.epochs=1",
        "--no-progress", "--cpu"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def unlearn_json(tmp_path, capsys, *args, name="u"):
    assert main(["unlearn", "--runs", str(tmp_path / "runs"), "--name", name, "--json", *TINY, *args]) in (0, 1)
    out = capsys.readouterr()
    unlearn_json.err = out.err
    return json.loads(out.out.strip().splitlines()[-1])


def rows_of(directory: Path) -> dict:
    return {p.name: json.loads(p.read_text()) for p in sorted((directory / "rows").glob("*.json"))}


def test_changed_setting_is_a_new_row(tmp_path, capsys):
    a = unlearn_json(tmp_path, capsys, "--method", "ssd", "--set", "ssd.alpha=1")
    b = unlearn_json(tmp_path, capsys, "--method", "ssd", "--set", "ssd.alpha=100")
    assert a["params"]["alpha"] == 1.0 and b["params"]["alpha"] == 100.0 and a["run_id"] != b["run_id"]
    assert a["preset"] == "digits-cnn.yaml+digits-cnn-random.yaml+--set"  # where the method's settings came from
    c = unlearn_json(tmp_path, capsys, "--method", "ssd", "--set", "ssd.alpha=1")  # the first one, from the store
    assert c == a
    table = (tmp_path / "runs" / "u" / "table.md").read_text()
    assert "ssd [alpha=1.0]" in table and "ssd [alpha=100.0]" in table
    unlearn_json(tmp_path, capsys, "--method", "ssd", "--set", "recipe.lr=1e-3")  # typed: 1e-3 is a float
    table = (tmp_path / "runs" / "u" / "table.md").read_text()
    assert "recipe.lr=0.001" in table and "recipe.lr=0.01" in table  # one table per configuration, difference named
    configs = json.loads((tmp_path / "runs" / "u" / "grid.json").read_text())["configurations"]
    assert sorted(c["common"]["recipe"]["lr"] for c in configs.values()) == [0.001, 0.01]


def test_index_files_are_identified_by_content(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f.txt").write_text("1\n2\n3\n")
    (tmp_path / "b" / "f.txt").write_text("4\n5\n6\n")
    first = unlearn_json(tmp_path, capsys, "--method", "ssd", "--forget", f"indices:{tmp_path / 'a' / 'f.txt'}")
    other = unlearn_json(tmp_path, capsys, "--method", "ssd", "--forget", f"indices:{tmp_path / 'b' / 'f.txt'}")
    assert first["run_id"] != other["run_id"]
    (tmp_path / "a" / "f.txt").write_text("1\n2\n7\n")  # edited: runs again
    edited = unlearn_json(tmp_path, capsys, "--method", "ssd", "--forget", f"indices:{tmp_path / 'a' / 'f.txt'}")
    assert edited["run_id"] not in (first["run_id"], other["run_id"])
    assert edited["config"]["cell"]["forget_hash"] != first["config"]["cell"]["forget_hash"]


def test_failed_rows_are_retried(tmp_path, capsys, monkeypatch):
    import obliviate.vision.run as run
    real = run.run_method
    monkeypatch.setattr(run, "run_method", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("flaky")))
    row = unlearn_json(tmp_path, capsys, "--method", "finetune")
    assert row["status"] == "failed" and "flaky" in row["error"]
    kept = unlearn_json(tmp_path, capsys, "--method", "finetune", "--no-retry-failed")
    assert kept["status"] == "failed"
    monkeypatch.setattr(run, "run_method", real)
    retried = unlearn_json(tmp_path, capsys, "--method", "finetune")
    assert retried["status"] == "ok" and retried["run_id"] == row["run_id"]


def test_damaged_rows_are_moved_aside_and_rerun(tmp_path, capsys):
    row = unlearn_json(tmp_path, capsys, "--method", "finetune")
    rows_dir = tmp_path / "runs" / "u" / "rows"
    files = sorted(rows_dir.glob("*.json"))
    method_file = next(p for p in files if "_finetune_" in p.name)
    gold_file = next(p for p in files if "_gold_" in p.name)
    method_file.write_text(method_file.read_text()[:40])  # truncated
    gold_file.write_text("")                               # empty
    again = unlearn_json(tmp_path, capsys, "--method", "finetune")
    assert unlearn_json.err.count("damaged row") == 2 and same_rows(again, row)
    damaged = list((rows_dir / "damaged").iterdir())
    assert len(damaged) == 2
    assert set(rows_of(tmp_path / "runs" / "u")) == {p.name for p in files}  # both rows written again


def test_damaged_checkpoint_is_never_loaded(tmp_path, capsys, cache):
    unlearn_json(tmp_path, capsys, "--method", "ssd")
    checkpoint = next(p for p in (cache / "models").glob("original-*.safetensors"))
    data = bytearray(checkpoint.read_bytes())
    data[-5] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    assert main(["unlearn", "--runs", str(tmp_path / "runs"), "--name", "v", *TINY, "--method", "finetune"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(checkpoint) in err and "--retrain-corrupt" in err
    row = unlearn_json(tmp_path, capsys, "--method", "finetune", "--retrain-corrupt", name="v")
    assert row["status"] == "ok"
    from obliviate.store import sha256_file
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    assert meta["sha256"][checkpoint.name] == sha256_file(checkpoint)


LM_TINY = ["--set", "task.n_authors=4", "--set", "task.n_holdout=2", "--set", "recipe.epochs=2",
           "--set", "model.n_embd=32", "--set", "model.n_head=2", "--set", "model.n_layer=1", "--set", "model.vocab_size=300",
           "--set", "ga.epochs=1", "--eval-limit", "4", "--no-progress", "--cpu", "--forget", "forget10"]


def lm_json(tmp_path, capsys, *args, name="lm"):
    code = main(["lm", "unlearn", "--runs", str(tmp_path / "runs"), "--name", name, "--json", "--method", "ga",
                 *LM_TINY, *args])
    out = capsys.readouterr()
    return code, (json.loads(out.out.strip().splitlines()[-1]) if code in (0, 1) else out.err)


def test_damaged_language_model_is_never_loaded(tmp_path, capsys, cache):
    code, first = lm_json(tmp_path, capsys)
    assert code == 0
    weights = next((cache / "lm").glob("target-*/model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, err = lm_json(tmp_path, capsys, name="lm2")
    assert code == 2 and "model.safetensors" in err and "damaged" in err
    code, again = lm_json(tmp_path, capsys, "--retrain-corrupt", name="lm2")
    assert code == 0 and same_rows(again, first)


def test_language_model_rows_are_reproducible(tmp_path, capsys, monkeypatch):
    code, a = lm_json(tmp_path, capsys)
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache2"))
    code, b = lm_json(tmp_path, capsys, name="lm-again")
    assert code == 0 and strip_volatile(a) == strip_volatile(b)


def test_write_fault_is_one_line(tmp_path, capsys, monkeypatch):
    import obliviate.store as store
    def fail(model, path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(store, "save_checkpoint", fail)
    assert main(["unlearn", "--runs", str(tmp_path / "runs"), *TINY, "--method", "finetune"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Permission denied" in err and "original-" in err


def test_rows_record_threads_and_determinism_and_warm_up_runs_first(tmp_path, capsys):
    row = unlearn_json(tmp_path, capsys, "--method", "finetune", "--threads", "1")
    assert row["threads"] == 1 and "deterministic_algorithms" in row["determinism"]
    assert "torch._dynamo" in sys.modules  # imported by the warm-up, before any clock started


# ----------------------------------------------------------------------------------- processes: interrupt, race
def _cli(root, name, cache):
    env = {**os.environ, "OBLIVIATE_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "obliviate.cli", "bench", "--runs", str(root / "runs"), "--name", name,
           "--methods", "finetune,ssd", "--seeds", "2", "--forget", "class:3", *TINY]
    return cmd, env


def _by_id(directory: Path) -> dict:
    return {r["run_id"]: strip_volatile(r) for r in rows_of(directory).values()}


@pytest.fixture(scope="module")
def reference_grid(tmp_path_factory):
    """One uninterrupted grid in its own process, from an empty cache: the rows every other run must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    cmd, env = _cli(root, "ref", root / "cache")
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    rows = _by_id(root / "runs" / "ref")
    assert len(rows) == 2 * 4
    return rows


def test_vision_rows_are_reproducible_across_invocations(tmp_path, reference_grid):
    cmd, env = _cli(tmp_path, "again", tmp_path / "cache-again")  # another process, another empty cache
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert _by_id(tmp_path / "runs" / "again") == reference_grid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_grid_resumes_to_the_same_rows(tmp_path, reference_grid, sig):
    cmd, env = _cli(tmp_path, "cut", tmp_path / "cache")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = tmp_path / "runs" / "cut" / "grid.json"
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(int(sig)).uniform(0.0, 2.0))  # somewhere in training, unlearning or evaluation
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT and proc.returncode != 0:
        assert proc.returncode == 130 and b"rerun resumes" in err, err.decode()[-1000:]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert _by_id(tmp_path / "runs" / "cut") == reference_grid


def test_concurrent_identical_grids(tmp_path, reference_grid):
    cmd, env = _cli(tmp_path, "race", tmp_path / "cache")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    assert _by_id(tmp_path / "runs" / "race") == reference_grid


# ---------------------------------------------------------------------------------------------- Ray and MLflow
def test_ray_executor_gives_the_rows_of_a_local_run(tmp_path, capsys, reference_grid):
    pytest.importorskip("ray")
    args = ["bench", "--runs", str(tmp_path / "runs"), "--methods", "finetune,ssd", "--seeds", "2", "--forget",
            "class:3", *TINY]
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert main([*args, "--name", "ray", "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    assert _by_id(tmp_path / "runs" / "ray") == reference_grid


def test_mlflow_mirrors_every_new_row(tmp_path, capsys):
    pytest.importorskip("mlflow")
    uri = f"file:{tmp_path / 'mlruns'}"
    row = unlearn_json(tmp_path, capsys, "--method", "ssd", "--mlflow", uri)
    import mlflow
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["u"], output_format="list")
    by_name = {r.info.run_name: r for r in runs}
    assert len(by_name) == 3 and row["run_id"] in by_name  # original, gold and the method
    mirrored = by_name[row["run_id"]]
    assert mirrored.data.metrics["acc_forget"] == pytest.approx(row["metrics"]["acc_forget"])
    assert mirrored.data.params["params.alpha"] == str(row["params"]["alpha"])
    assert mirrored.data.tags["config_hash"] == row["config_hash"]


def test_thread_count_and_evaluation_data_are_part_of_the_row_id(monkeypatch):
    from obliviate.grid import GridOptions, make_plan
    from obliviate.text.data import tasks as text_data
    from obliviate.text.family import TextFamily
    from obliviate.vision.family import VisionFamily

    def ids(family, threads=2):
        plan = make_plan(family, GridOptions(methods=["ga" if family.name == "text" else "finetune"],
                                             forgets=["forget10" if family.name == "text" else "random:0.1"],
                                             threads=threads))
        return [job.run_id for cell in plan.cells for job in cell.jobs]

    vision = VisionFamily(dataset="digits")
    assert ids(vision, 1) != ids(vision, 2) and ids(vision, 2) == ids(vision, 2)
    text = TextFamily(task="authors", overrides=["task.n_authors=6", "task.n_holdout=2"])
    before = ids(text)
    # the same training data evaluated with other wrong answers is another configuration
    monkeypatch.setattr(text_data, "_wrong_values", lambda author, attr, rng, n, taken: ["x"] * n)
    assert ids(text) != before
