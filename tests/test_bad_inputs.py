"""Every bad input in docs/bad-inputs.md is refused before any work: exit status 2, one line on stderr, no traceback,
no model trained. The table in the document is the list of cases, so the document and the tests cannot drift apart."""
import re
import shlex
from pathlib import Path

import pytest

from obliviate.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"


def cases():
    out = []
    section = DOC.read_text().split("## Bad input", 1)[1].split("## Faults", 1)[0]
    for line in section.splitlines():
        m = re.match(r"\| (\d+) \| `obliviate ([^`]*)` \| ([^|]*)\| `([^`]*)` \|$", line)
        if m:
            out.append(pytest.param(m.group(2), m.group(3).strip().strip("`"), m.group(4), id=f"case{m.group(1)}"))
    return out


def test_the_document_lists_enough_cases():
    assert len(cases()) >= 40
    faults = re.findall(r"^\| F\d+ \|", DOC.read_text(), flags=re.M)
    assert len(cases()) + len(faults) >= 50


def set_up(tmp: Path, setup: str, monkeypatch) -> None:
    if not setup:
        return
    name, content = (part.strip() for part in setup.split(":", 1))
    if name == "cache":
        (tmp / "cache").write_text("a file, not a folder")
        monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp / "cache"))
    elif name.startswith("runs/"):
        (tmp / "runs").mkdir(exist_ok=True)
        (tmp / name).write_text("a file, not a folder")
    else:
        (tmp / name).write_text(content.replace("\\n", "\n") + "\n")


@pytest.mark.parametrize("command,setup,message", cases())
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command, setup, message):
    cache = tmp_path / "cache-models"
    monkeypatch.setenv("OBLIVIATE_CACHE", str(cache))
    set_up(tmp_path, setup, monkeypatch)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in shlex.split(command)]
    sub = 2 if argv[0] == "lm" else 1
    argv[sub:sub] = ["--runs", str(tmp_path / "runs"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert message.replace("{tmp}", str(tmp_path)) in err, err
    assert not list(cache.rglob("*.safetensors")), "a model was trained before the error"


def test_every_fault_names_a_test_that_exists():
    root = DOC.parents[1]
    for test in re.findall(r"`(tests/[^`]+)`", DOC.read_text().split("## Faults", 1)[1]):
        path, name = test.split("::")
        name = name.split("[")[0]
        assert f"def {name}(" in (root / path).read_text(), test
