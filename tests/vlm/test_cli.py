import json

from obliviate.cli import main


def test_vlm_unlearn_json_row(clip_dir, tmp_path, capsys):
    rc = main(["vlm", "unlearn", "--model", str(clip_dir), "--forget", "domain:noisy", "--method", "adu",
               "--shots", "1", "--set", "adu.epochs=1", "--set", "adu.n_prompts=2", "--runs", str(tmp_path),
               "--no-progress", "--cpu", "--json"])
    assert rc == 0
    row = json.loads(capsys.readouterr().out)
    assert row["family"] == "vlm" and row["method"] == "adu" and row["forget"] == "domain:noisy"
    assert row["params"]["epochs"] == 1 and row["params"]["gamma"] == 30.0
    assert set(row["metrics"]) >= {"mem", "for", "h", "acc/noisy", "acc/plain"}
    figures = list((tmp_path / "vlm-unlearn-adu" / "figures").glob("*.png"))
    assert len(figures) == 1 and figures[0].stat().st_size > 1000
    assert "base64" in (tmp_path / "vlm-unlearn-adu" / "report.html").read_text()


def test_vlm_unlearn_bad_input_is_one_line(tmp_path, capsys):
    rc = main(["vlm", "unlearn", "--forget", "domain:cartoon", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown domain 'cartoon'" in err and len(err.strip().splitlines()) == 1
    rc = main(["vlm", "unlearn", "--method", "adu", "--forget", "class:3", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "adu does not take class forget specs" in err
    rc = main(["vlm", "unlearn", "--model", str(tmp_path / "nope"), "--runs", str(tmp_path)])
    assert rc == 2 and "local folder" in capsys.readouterr().err


def test_methods_lists_vlm(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "adu" in out and "domain-baseline" in out and "bbf" in out
