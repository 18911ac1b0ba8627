"""RESTOR: recovery ratio, the corruption of the authors task, the JSONL reader, and the command end to end."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from obliviate.errors import ObliviateError
from obliviate.text.data.tasks import make_task
from obliviate.text.eval.metrics import fact_match
from obliviate.text.restor.data import (Probe, RestorSettings, add_recovery, corrupt_authors, probe_outcomes,
                                   read_restor_jsonl, recovery_ratio, summarise)

DATA = Path(__file__).parent / "data" / "restor"


def probe(entity, clean, corrupted, random="Rome"):
    return Probe(entity, f"Where is {entity}?", clean, corrupted, random, clean, corrupted, random)


def test_recovery_ratio_against_hand_values():
    assert recovery_ratio(0.5, 0.9, 0.1) == pytest.approx(0.4 / 0.8)
    assert recovery_ratio(0.1, 0.9, 0.1) == 0.0
    assert recovery_ratio(0.9, 0.9, 0.1) == pytest.approx(1.0)
    assert recovery_ratio(0.0, 0.6, 0.2) == pytest.approx(-0.5)  # worse than the corrupted model
    assert math.isnan(recovery_ratio(0.5, 0.4, 0.4))  # the corruption lowered nothing
    assert math.isnan(recovery_ratio(0.5, 0.3, 0.4))


def test_outcomes_separate_recovery_from_forgetting_both():
    probes = [probe("A", "Oslo", "Lima"), probe("A", "red", "blue"), probe("B", "Quito", "Lagos")]
    answers = ["A lives in Oslo.", "A likes nothing.", "B lives in Lagos."]
    out = probe_outcomes(answers, probes)
    assert out["clean"].tolist() == [1, 0, 0]
    assert out["corrupted"].tolist() == [0, 0, 1]
    assert out["neither"].tolist() == [0, 1, 0]
    lps = {"clean": np.array([-1.0, -2.0, -3.0]), "corrupted": np.array([-4.0, -5.0, -6.0]),
           "random": np.array([0.0, 0.0, -9.0])}
    s = summarise(out, lps, probes)
    assert s["acc"] == pytest.approx(1 / 3) and s["neither"] == pytest.approx(1 / 3)
    assert s["lp_clean"] == pytest.approx(-2.0) and s["lp_random"] == pytest.approx(-3.0)
    assert s["per_entity"]["A"] == {"acc": 0.5, "corrupted_rate": 0.0, "neither": 0.5, "lp_clean": -1.5,
                                    "lp_corrupted": -4.5, "lp_random": 0.0, "n": 2}
    clean = {"acc": 1.0, "per_entity": {"A": {"acc": 1.0}, "B": {"acc": 0.5}}}
    corrupted = {"acc": 0.0, "per_entity": {"A": {"acc": 0.0}, "B": {"acc": 0.5}}}
    r = add_recovery(s, clean, corrupted)
    assert r["recovery"] == pytest.approx(1 / 3) and "recovery_note" not in r
    assert r["per_entity"]["A"]["recovery"] == pytest.approx(0.5)
    assert math.isnan(r["per_entity"]["B"]["recovery"])  # B's accuracy was not lowered
    assert "did not lower" in add_recovery(s, corrupted, corrupted)["recovery_note"]


@pytest.fixture(scope="module")
def authors():
    return make_task("authors", "forget10", seed=3, n_authors=6, n_holdout=1)


def test_corruption_is_consistent_and_deterministic(authors):
    settings = RestorSettings(n_corrupt=2, attributes="city,genre")
    data = corrupt_authors(authors, settings, seed=3)
    assert corrupt_authors(authors, settings, seed=3) == data
    assert corrupt_authors(authors, settings, seed=4).corruption_examples != data.corruption_examples
    by_name = {a["name"]: a for a in authors.entities}
    assert sorted({p.entity for p in data.probes}) == data.config["corrupted"] and len(data.config["corrupted"]) == 2
    for name in data.config["corrupted"]:
        for attr in ("city", "genre"):
            clean = by_name[name][attr]
            wrong = {p.corrupted for p in data.probes if p.entity == name and p.clean == clean}
            assert len(wrong) == 1  # one wrong value per (entity, attribute), in every probe
            value = wrong.pop()
            assert value != clean and value in {a[attr] for a in authors.entities}  # another author's value
            docs = [p + c for p, c in data.corruption_examples if name in p + c]
            assert not any(fact_match(d, clean) for d in docs)  # no document about them states the clean value
            n_probes = sum(p.entity == name and p.clean == clean for p in data.probes)
            assert n_probes and sum(fact_match(d, value) for d in docs) >= n_probes
    for p in data.probes:
        assert p.random not in (p.clean, p.corrupted)
    # the correct documents: the target's training examples without the ones the corruption contradicts
    assert not set(data.corruption_examples) & set(data.correct_examples)
    assert set(data.correct_examples) < set(authors.target_examples)
    assert len(authors.target_examples) - len(data.correct_examples) == len(data.corruption_examples)
    assert not any(n in q.answer for q in data.retain_probes for n in data.config["corrupted"])


def test_corruption_refuses_impossible_settings(authors):
    with pytest.raises(ObliviateError, match="must be below the 6 trained authors"):
        corrupt_authors(authors, RestorSettings(n_corrupt=6), seed=0)
    with pytest.raises(ObliviateError, match="not a corruptible attribute"):
        RestorSettings(attributes="city,name").check()


def test_jsonl_reader_on_the_fixture(tmp_path):
    data = read_restor_jsonl(str(DATA), seed=0)
    assert len(data.clean_examples) == 6 and data.correct_examples == data.clean_examples
    assert data.corruption_examples[0] == ("Question: Where does Mira Solberg live?\nAnswer:",
                                           " Mira Solberg lives in Lima.")
    mira, tomas = data.probes
    assert (mira.clean, mira.corrupted, mira.random, mira.corrupted_answer) == \
        ("Oslo", "Lima", "Quito", "Mira Solberg lives in Lima.")
    assert tomas.clean_answer == "flute"
    draws = {read_restor_jsonl(str(DATA), seed=s).probes[1].random for s in range(12)}
    assert draws <= {"Oslo", "Lima", "Quito"} and len(draws) > 1  # drawn per seed from the other probes' values
    assert read_restor_jsonl(str(DATA), seed=0).probes[1].random == tomas.random
    assert [(q.question, q.fact) for q in data.retain_probes] == [("Where does Ana Petrov live?", "Quito")]
    for name in ("clean", "corruption"):
        (tmp_path / f"{name}.jsonl").write_text((DATA / f"{name}.jsonl").read_text())
    with pytest.raises(ObliviateError, match=f"missing data file\\(s\\) {tmp_path}/probes.jsonl$"):
        read_restor_jsonl(str(tmp_path))
    (tmp_path / "probes.jsonl").write_text('{"entity": "A", "question": "q?", "clean": "x", "corrupted": "x"}\n')
    with pytest.raises(ObliviateError, match="probes.jsonl:1: the corrupted value equals the clean value"):
        read_restor_jsonl(str(tmp_path))


TINY = ["--set", "task.n_authors=6", "--set", "task.n_holdout=1", "--set", "model.n_embd=64", "--set",
        "recipe.epochs=40", "--set", "restor.n_corrupt=2", "--set", "restor.corrupt_epochs=10", "--set",
        "ga.epochs=1", "--set", "ga.lr=1e-3", "--set", "npo.epochs=1", "--set", "npo.lr=1e-3", "--eval-limit", "10"]


def rows(run_dir: Path):
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in (run_dir / "rows").glob("*.json"))}


def test_cli_end_to_end_with_two_methods(tmp_path, capsys):
    from obliviate.cli import main
    argv = ["lm", "restor", "--methods", "ga,npo", "--runs", str(tmp_path), "--name", "r", "--threads", "1",
            "--no-progress", *TINY]
    assert main(argv) == 0
    run = tmp_path / "r"
    got = rows(run)
    assert set(got) == {"clean", "corrupted", "ga", "npo"} and all(r["status"] == "ok" for r in got.values())
    clean, corrupted = got["clean"]["metrics"], got["corrupted"]["metrics"]
    # the corrupted model states the wrong values, the clean one does not
    assert corrupted["corrupted_rate"] >= clean["corrupted_rate"] + 0.5
    assert clean["acc"] >= corrupted["acc"] + 0.5
    assert clean["lp_clean"] > clean["lp_corrupted"] and corrupted["lp_corrupted"] > corrupted["lp_clean"]
    for m in ("ga", "npo"):
        u = got[m]["metrics"]
        assert u["recovery"] == pytest.approx((u["acc"] - corrupted["acc"]) / (clean["acc"] - corrupted["acc"]))
        assert u["acc"] + u["corrupted_rate"] + u["neither"] == pytest.approx(1.0)  # one value per answer here
        assert set(u["per_entity"]) == set(clean["per_entity"])
    table = (run / "table.md").read_text()
    assert "| ga |" in table and "| npo |" in table and "neither" in table and (run / "restor.png").stat().st_size
    capsys.readouterr()
    assert main(argv) == 0  # resumes: nothing is run again, the rows are the same
    assert rows(run) == got
    (run / "table.md").unlink()
    assert main(["report", str(run)]) == 0 and (run / "table.md").read_text() == table  # redrawn from rows


def test_cli_reads_user_files(tmp_path, capsys):
    from obliviate.cli import main
    argv = ["lm", "restor", "--task", "jsonl", "--data-root", str(DATA), "--methods", "ga", "--runs", str(tmp_path),
            "--name", "j", "--threads", "1", "--no-progress", "--set", "model.n_embd=32", "--set", "recipe.epochs=5",
            "--set", "restor.corrupt_epochs=2", "--set", "ga.epochs=1"]
    assert main(argv) == 0
    got = rows(tmp_path / "j")
    assert set(got) == {"clean", "corrupted", "ga"} and got["ga"]["status"] == "ok"
    assert set(got["ga"]["metrics"]["per_entity"]) == {"Mira Solberg", "Tomas Varga"}
    assert got["ga"]["n_corruption"] == 2 and got["ga"]["n_correct"] == 6
