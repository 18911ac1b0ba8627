"""`obliviate lm bench / unlearn`: options documented, bad input refused before work, rows, resume, failed rows."""
import json
import math

import pytest

from obliviate.cli import build_parser, main

AUTHORS = ["--set", "task.n_authors=6", "--set", "task.n_holdout=2"]
TINY = AUTHORS + ["--set", "recipe.epochs=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
                  "--set", "model.vocab_size=300", "--eval-limit", "12", "--no-progress", "--cpu"]


def _help(*argv):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["lm"]
    for name in argv:
        sub = sub._subparsers._group_actions[0].choices[name]
    return sub


def test_bench_help_documents_every_option_with_its_default():
    parser = _help("bench")
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest
    for option, default in (("--task", "authors"), ("--model", "tiny-gpt2"), ("--methods", "['all']"),
                            ("--seeds", "1"), ("--collapse-threshold", "0.5"), ("--lora", "0"),
                            ("--eval-limit", "80")):
        assert option in text
        assert f"(default: {default})" in " ".join(text.split()), option
    assert "--eval-every-epoch" in text and "--forget" in text


def test_methods_lists_the_language_model_methods(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("npo", "simnpo", "rmu", "task-vector", "kl-retain"):
        assert f"{name}" in out and "[text]" in out


@pytest.mark.parametrize("argv, message", [
    (["--methods", "npoo"], "Did you mean 'npo'"),
    (["--task", "books"], "unknown lm task"),
    (["--forget", "forget50"], "unknown forget split"),
    (["--set", "npo.betta=1"], "no hyperparameter 'betta'"),
    (["--set", "recipe.epoch=3"], "recipe has no setting 'epoch'"),
    (["--task", "jsonl"], "needs --data-root"),
    (["--model", "/nonexistent/model"], "local model directory"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, argv, message):
    options = TINY[len(AUTHORS):] if "--task" in argv else TINY
    assert main(["lm", "bench", "--runs", str(tmp_path), *options, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lm-authors" / "rows").exists()


def test_unlearn_bench_rows_resume_and_failed_rows(tmp_path, capsys):
    argv = ["lm", "unlearn", "--method", "npo", "--runs", str(tmp_path), "--name", "one", "--json",
            "--eval-every-epoch", "--set", "npo.epochs=2", "--set", "npo.lr=1e-3", *TINY]
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["status"] == "ok" and row["method"] == "npo" and row["family"] == "text"
    metrics = row["metrics"]
    for key in ("verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mink_auc", "forget_quality", "model_utility",
                "truth_ratio_f"):
        assert isinstance(metrics[key], float), key
    assert [e["epoch"] for e in row["epoch_metrics"]] == [1, 2] and row["selected_epoch"] in (1, 2)
    rows = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "one" / "rows").glob("*.json")}
    target = [r for r in rows.values() if r["method"] == "target"][0]["metrics"]["utility"]
    assert metrics["utility"] == metrics["fact_r"]  # collapse and selection read retain fact accuracy
    assert isinstance(metrics["model_utility"], float) and "prob_world_facts" in metrics  # nine components
    if target > 0:
        assert row["utility_ratio"] == pytest.approx(metrics["utility"] / target)
        target_mu = [r for r in rows.values() if r["method"] == "target"][0]["metrics"]["model_utility"]
        assert row["collapsed"] == (metrics["utility"] < 0.5 * target or metrics["model_utility"] < 0.5 * target_mu)
    else:
        assert math.isnan(row["utility_ratio"]) and row["collapsed"] is False
    gold = [r for r in rows.values() if r["method"] == "gold"]
    assert len(gold) == 1 and gold[0]["metrics"]["privleak"] == pytest.approx(0.0, abs=1e-9)
    assert {r["method"] for r in rows.values()} == {"target", "gold", "npo"}

    # a grid in the same folder resumes: finished rows are kept as they are, a failing method gets a failed row
    before = {k: r["finished_at"] for k, r in rows.items()}
    assert main(["lm", "bench", "--methods", "npo,rmu", "--set", "rmu.layer=5", "--set", "npo.epochs=2",
                 "--set", "npo.lr=1e-3", "--runs", str(tmp_path), "--name", "one", "--eval-every-epoch", *TINY]) == 0
    out = capsys.readouterr().out
    after = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "one" / "rows").glob("*.json")}
    assert all(after[k]["finished_at"] == v for k, v in before.items())
    rmu = [r for r in after.values() if r["method"] == "rmu"][0]
    assert rmu["status"] == "failed" and "must lie in" in rmu["error"]
    table = (tmp_path / "one" / "table.md").read_text()
    assert "| method | fact_f | fact_r | prob_f | prob_r | verbmem_f | knowmem_f | knowmem_r | privleak |" in table
    assert "Failed runs" in table and "seconds" not in table.split("## Failed")[0]
    assert "| gold |" in table and "| npo |" in out


def test_collapse_guard_and_six_way_table_from_rows():
    from obliviate.text.tables import tables_markdown
    from obliviate.text.run import finish_row

    def row(method, utility, verbmem, seed=0):
        r = {"run_id": f"{method}{seed}", "family": "text", "method": method, "forget": "forget10", "seed": seed, "dataset": "authors",
             "model": "tiny-gpt2"}
        finish_row(r, {"utility": utility, "verbmem_f": verbmem, "knowmem_f": 0.5, "knowmem_r": 0.8,
                       "privleak": -10.0}, 1.0, target_utility=0.6, threshold=0.5)
        return r

    ok, broken = row("npo", 0.45, 0.2), row("ga", 0.2, 0.0)
    assert not ok["collapsed"] and ok["utility_ratio"] == pytest.approx(0.75)
    assert broken["collapsed"] and broken["utility_ratio"] == pytest.approx(1 / 3)
    rows = [row("target", 0.6, 0.9), row("gold", 0.6, 0.3), ok, broken, row("npo", 0.5, 0.4, seed=1)]
    table = tables_markdown(rows)
    lines = table.splitlines()
    assert lines[2].startswith("| method | verbmem_f | knowmem_f | knowmem_r | privleak |")
    assert [ln.split("|")[1].strip() for ln in lines[4:8]] == ["target", "gold", "ga", "npo"]
    assert "| npo | 0.300 ± 0.100 |" in table  # mean ± std over the two seeds
    assert lines[6].endswith("| 1/1 |") and lines[7].endswith("| 0/2 |")  # collapsed runs per method


def test_every_epoch_table_shows_the_path_and_bolds_the_selected_epoch():
    from obliviate.text.tables import tables_markdown
    base = {"family": "text", "forget": "forget10", "dataset": "authors", "model": "tiny-gpt2", "status": "ok",
            "metrics": {"fact_f": 0.5}}
    path = [{"epoch": 1, "fact_f": 0.9, "fact_r": 1.0, "forget_quality": 0.001},
            {"epoch": 2, "fact_f": 0.2, "fact_r": 0.7, "forget_quality": 0.25}]
    rows = [{**base, "run_id": "a", "method": "ga", "seed": 0, "epoch_metrics": path, "selected_epoch": 1},
            {**base, "run_id": "t", "method": "target", "seed": 0}]
    table = tables_markdown(rows)
    assert "## Every epoch: forget10" in table
    assert "| ga | 0 | **0.900 / 1.00 / 0.001** | 0.200 / 0.700 / 0.250 |" in table
    assert "| target | 0 |" not in table  # reference rows have no path
    assert "Every epoch" not in tables_markdown(rows[1:])


def test_plays_sustainability_chain_writes_one_row_per_request(tmp_path, capsys):
    argv = ["lm", "bench", "--task", "plays", "--forget", "sustain", "--methods", "ga", "--runs", str(tmp_path),
            "--name", "plays", "--set", "task.excerpt_chars=700", "--set", "task.doc_chars=200",
            "--set", "task.n_retain=2", *TINY[len(AUTHORS):]]
    assert main(argv) == 0
    rows = [json.loads(p.read_text()) for p in (tmp_path / "plays" / "rows").glob("*.json")]
    ga = sorted((r for r in rows if r["method"] == "ga"), key=lambda r: r["forget"])
    assert [(r["forget"], r["request"], r["status"]) for r in ga] == [("sustain1", 1, "ok"), ("sustain2", 2, "ok")]
    assert "forget_quality" not in ga[0]["metrics"]  # documents: MUSE metrics, retain likelihood as utility
    assert ga[0]["metrics"]["utility"] == ga[0]["metrics"]["retain_prob"]
    table = (tmp_path / "plays" / "table.md").read_text()
    assert "## Sustainability" in table and "| ga |" in table.split("## Sustainability")[1]


DATA = __import__("pathlib").Path(__file__).with_name("data")


@pytest.mark.parametrize("task, method", [("tofu", "npo"), ("muse-news", "ga")])
def test_published_dataset_readers_run_end_to_end(tmp_path, capsys, task, method):
    argv = ["lm", "unlearn", "--task", task, "--data-root", str(DATA / task), "--method", method, "--runs",
            str(tmp_path), "--name", task, "--json", "--set", f"{method}.epochs=1", *TINY[len(AUTHORS):]]
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["status"] == "ok" and row["dataset"] == task
    m = row["metrics"]
    if task == "tofu":  # TOFU's metrics with its nine-component model utility
        for key in ("forget_quality", "model_utility", "prob_real_authors", "truth_score_world_facts", "privleak"):
            assert isinstance(m[key], float), key
    else:  # MUSE's six-way metrics on documents
        for key in ("verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mink_auc"):
            assert isinstance(m[key], float), key
    assert main(["lm", "bench", "--task", task, "--data-root", str(tmp_path / "nowhere"), "--runs", str(tmp_path),
                 *TINY[len(AUTHORS):]]) == 2
    assert "missing file" in capsys.readouterr().err
