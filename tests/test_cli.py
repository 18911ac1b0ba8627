"""The command line end to end on a tiny configuration, and its error messages."""
import json
import os

import pytest

from obliviate.cli import main

TINY = ["--dataset", "digits", "--set", "recipe.epochs=2", "--set", "lotus.epochs=1", "--no-progress"]
METRICS = ["acc_forget", "acc_retain", "acc_unseen", "acc_test", "mia", "mia_efficacy", "jsd", "rf_jsd", "avg_gap",
           "seconds"]


def test_unlearn_json_row(tmp_path, capsys):
    rc = main(["unlearn", "--forget", "random:0.1", "--method", "lotus", "--seed", "0", "--json",
               "--runs", str(tmp_path), *TINY])
    assert rc == 0
    row = json.loads(capsys.readouterr().out)
    assert row["method"] == "lotus" and row["status"] == "ok"
    for k in METRICS:
        assert isinstance(row["metrics"][k], float), k
    assert (tmp_path / "unlearn-lotus" / "table.md").exists()
    rows = list((tmp_path / "unlearn-lotus" / "rows").glob("*.json"))
    assert {json.loads(p.read_text())["method"] for p in rows} == {"original", "gold", "lotus"}


def test_bench_resumes_without_rerunning(tmp_path, capsys):
    args = ["bench", "--forget", "class:3", "--methods", "lotus", "--name", "g", "--runs", str(tmp_path), *TINY]
    assert main(args) == 0
    row_file = next(p for p in (tmp_path / "g" / "rows").glob("*_lotus_*.json"))
    stamp = row_file.stat().st_mtime_ns
    assert main(args) == 0
    assert row_file.stat().st_mtime_ns == stamp  # finished rows are kept, not recomputed
    assert "Original vs gold" in (tmp_path / "g" / "table.md").read_text()


def test_methods_lists_lotus(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "lotus" in out and "arXiv 2503.18314" in out


def test_help_documents_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["unlearn", "--help"])
    out = capsys.readouterr().out
    for option in ("--dataset", "--model", "--forget", "--method", "--seed", "--json", "--data-root"):
        assert option in out
    assert "default: random:0.1" in out


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--model", "resnet99"], "unknown model"),
    (["--method", "nope"], "unknown method"),
    (["--forget", "random:2"], "strictly between"),
    (["--forget", "class:42", "--dataset", "digits"], "class 42 does not exist"),
    (["--forget", "indices:/no/such/file.txt", "--dataset", "digits"], "does not exist"),
    (["--set", "lotus.nope=1"], "no hyperparameter 'nope'"),
    (["--set", "recipe.nope=1"], "recipe has no setting 'nope'"),
    (["--dataset", "mnist", "--data-root", "/no/such/dir"], "mnist.pkl.gz not found"),
])
def test_bad_input_is_one_clear_error(tmp_path, capsys, args, message):
    rc = main(["unlearn", "--runs", str(tmp_path), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_no_progress_also_quiets_the_hugging_face_bars(monkeypatch, capsys):
    # transformers reads HF_HUB_DISABLE_PROGRESS_BARS when imported; the flag must set it before any command runs
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")   # recorded, so the test leaves the variable as it was
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    assert main(["unlearn", "--dataset", "no-such-dataset", "--no-progress"]) == 2
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    main(["unlearn", "--dataset", "no-such-dataset"])
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
