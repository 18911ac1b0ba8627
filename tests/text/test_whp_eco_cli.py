"""WHP, WHP-logits and ECO through `obliviate lm unlearn` / `lm bench` like every LM method; `obliviate lm anchors`."""
import json

from obliviate.cli import main

AUTHORS = ["--set", "task.n_authors=6", "--set", "task.n_holdout=2"]
TINY = AUTHORS + ["--set", "recipe.epochs=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
                  "--set", "model.vocab_size=300", "--eval-limit", "12", "--no-progress", "--cpu"]
FAST = ["--set", "whp.epochs=1", "--set", "whp.reinforce_epochs=1", "--set", "whp.batch_size=8",
        "--set", "eco.classifier=lm", "--set", "eco.search_steps=1", "--set", "eco.search_items=8"]


def test_anchors_command_writes_a_dictionary_whp_reads(tmp_path, capsys):
    out = tmp_path / "anchors.json"
    assert main(["lm", "anchors", "--task", "authors", *AUTHORS, "--out", str(out)]) == 0
    anchors = json.loads(out.read_text())
    assert anchors and all(isinstance(v, str) and v for v in anchors.values())
    assert "anchored terms written" in capsys.readouterr().out
    assert main(["lm", "anchors", "--task", "jsonl", "--out", str(out)]) == 2
    assert "needs --data-root" in capsys.readouterr().err

    # whp-logits is a view like eco (tests/text/test_whp.py runs it through the evaluation's scoring and generation)
    argv = ["lm", "bench", "--methods", "whp,eco", "--runs", str(tmp_path), "--name", "g",
            "--set", f"whp.anchors={out}", *FAST, *TINY]
    assert main(argv) == 0
    rows = {r["method"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "g" / "rows").glob("*.json"))}
    assert {"target", "gold", "whp", "eco"} <= set(rows)
    for m in ("whp", "eco"):
        assert rows[m]["status"] == "ok", rows[m].get("error")
        assert isinstance(rows[m]["metrics"]["forget_quality"], float)
    assert rows["whp"]["params"]["anchors"] == str(out)
    eco = rows["eco"]["metrics"]
    for key in ("eco_fpr_retain", "eco_fpr_holdout", "eco_recall_forget", "eco_recall_paraphrased",
                "eco_ms_per_token", "plain_ms_per_token", "eco_overhead_ms_per_token", "eco_sigma"):
        assert isinstance(eco[key], float), key
    assert 0.0 <= eco["eco_fpr_holdout"] <= 1.0 and 0.0 <= eco["eco_recall_forget"] <= 1.0
    # bad input is refused before any work
    assert main(["lm", "unlearn", "--method", "whp", "--set", "whp.anchors=/nonexistent.json", "--runs",
                 str(tmp_path), *TINY]) == 2
    assert "anchors file" in capsys.readouterr().err
