"""Readers of the published TOFU and MUSE data, from local files (nothing is downloaded).

- ``tofu``: the JSON files of the Hugging Face dataset ``locuslab/TOFU`` under ``data_root``: ``forget01/05/10.json``
  and ``retain99/95/90.json`` (``question``, ``answer``: what the target and gold models train on),
  ``forget01/05/10_perturbed.json`` and ``retain_perturbed.json`` (plus ``paraphrased_answer`` and the list
  ``perturbed_answer``: TOFU's evaluation sets), ``real_authors_perturbed.json`` and ``world_facts_perturbed.json``
  (utility sets, ``answer`` and ``perturbed_answer``), and ``holdout01/05/10.json`` (never-trained authors: the
  non-members of membership inference). Files are JSON lines (as published) or one JSON array.
- ``muse-news`` / ``muse-books``: MUSE's files (Hugging Face ``muse-bench/MUSE-News`` / ``muse-bench/MUSE-Books``, laid
  out as in the MUSE repository's ``data/<corpus>/``): ``raw/forget``, ``raw/retain1`` (and ``raw/retain2`` when
  present), ``raw/holdout`` (``.txt`` text, or ``.json`` lists of strings), ``verbmem/forget.json`` (``prompt``,
  ``gt``), ``knowmem/forget_qa.json`` and ``knowmem/retain_qa.json`` (``question``, ``answer``; optional
  ``retain_qa_icl.json`` in-context examples), and optionally ``privleak/forget.json`` / ``privleak/holdout.json``
  (lists of strings) for membership inference.

A missing file is a one-line error naming it and the dataset.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

from ...errors import ObliviateError
from .tasks import QA, TASKS, LMTask, _answer_cloze, _no_unused, qa_example

TOFU_NAME = "locuslab/TOFU"
TOFU_SPLITS = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
MUSE_NAMES = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}


def read_records(path: Path, dataset: str) -> list:
    """Records of a JSON file: JSON lines or one JSON array."""
    if not path.is_file():
        raise ObliviateError(f"missing file {path} of the {dataset} dataset: put its published files under --data-root")
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ObliviateError(f"{path} ({dataset}) is empty")
    try:
        if text.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{path} ({dataset}): not JSON or JSON lines ({e.msg}, line {e.lineno})") from None
    if not records:
        raise ObliviateError(f"{path} ({dataset}) holds no records")
    return records


def _field(rec, key: str, path: Path, n: int, kind=str):
    value = rec.get(key) if isinstance(rec, dict) else None
    if kind is str and not (isinstance(value, str) and value):
        raise ObliviateError(f"{path}:{n}: missing field {key!r} (a non-empty string)")
    if kind is list and not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise ObliviateError(f"{path}:{n}: missing field {key!r} (a non-empty list of strings)")
    return value


# -------------------------------------------------------------------------------------------------------------- TOFU

def _tofu_qa(root: Path, name: str, paraphrase: bool = True) -> List[QA]:
    path = root / name
    out = []
    for n, rec in enumerate(read_records(path, TOFU_NAME), 1):
        question, answer = _field(rec, "question", path, n), _field(rec, "answer", path, n)
        perturbed = _field(rec, "perturbed_answer", path, n, list)
        para = _field(rec, "paraphrased_answer", path, n) if paraphrase else ""
        out.append(QA(question, answer, para, tuple(perturbed)))
    return out


def _tofu_examples(root: Path, name: str) -> list:
    path = root / name
    return [qa_example(QA(_field(r, "question", path, n), _field(r, "answer", path, n)))
            for n, r in enumerate(read_records(path, TOFU_NAME), 1)]


def make_tofu(forget: str = "forget10", seed: int = 0, data_root: Optional[str] = None, **unused) -> LMTask:
    """TOFU (Maini et al., COLM 2024, arXiv 2401.06121) from its published files; forget01/05/10 with retain99/95/90.

    The target trains on forget + retain answers, the gold model on the retain answers; paraphrased and perturbed
    answers are never trained. Model utility has TOFU's nine components (retain, real authors, world facts)."""
    _no_unused("tofu", unused)
    if forget not in TOFU_SPLITS:
        raise ObliviateError(f"task tofu: unknown forget split {forget!r}; use one of {', '.join(TOFU_SPLITS)}")
    if not data_root:
        raise ObliviateError(f"task tofu needs --data-root: a folder with the {TOFU_NAME} JSON files")
    root = Path(data_root)
    holdout = "holdout" + forget[len("forget"):]
    names = [f"{forget}.json", f"{TOFU_SPLITS[forget]}.json", f"{forget}_perturbed.json", "retain_perturbed.json",
             "real_authors_perturbed.json", "world_facts_perturbed.json", f"{holdout}.json"]
    for name in names:  # every file checked before any is parsed
        if not (root / name).is_file():
            raise ObliviateError(f"missing file {root / name} of the {TOFU_NAME} dataset: put its published files "
                                 f"under --data-root")
    forget_qa = _tofu_qa(root, f"{forget}_perturbed.json")
    utility = {"real_authors": _tofu_qa(root, "real_authors_perturbed.json", paraphrase=False),
               "world_facts": _tofu_qa(root, "world_facts_perturbed.json", paraphrase=False)}
    return LMTask(name="tofu", forget=forget, seed=seed, forget_examples=_tofu_examples(root, f"{forget}.json"),
                  retain_examples=_tofu_examples(root, f"{TOFU_SPLITS[forget]}.json"),
                  holdout_examples=_tofu_examples(root, f"{holdout}.json"), forget_qa=forget_qa,
                  retain_qa=_tofu_qa(root, "retain_perturbed.json"), verbmem=[_answer_cloze(q) for q in forget_qa],
                  utility_sets=utility, config={"data_root": str(root.resolve())})


TASKS.register("tofu")(make_tofu)


# -------------------------------------------------------------------------------------------------------------- MUSE

def _find(root: Path, stem: str, dataset: str, required: bool = True) -> Optional[Path]:
    for suffix in (".txt", ".json"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    if required:
        raise ObliviateError(f"missing file {root / stem}.txt (or .json) of the {dataset} dataset: put its published "
                             f"files under --data-root")
    return None


def _documents(path: Path, dataset: str, doc_chars: int) -> List[str]:
    """A raw corpus as documents: a JSON list of strings as it is, a text file cut at blank lines into pieces of at
    most about ``doc_chars`` characters."""
    if path.suffix == ".json":
        docs = read_records(path, dataset)
        if not all(isinstance(d, str) and d for d in docs):
            raise ObliviateError(f"{path} ({dataset}): expected a list of non-empty strings")
        return docs
    docs, current = [], ""
    for para in path.read_text(encoding="utf-8").split("\n\n"):
        if current and len(current) + len(para) > doc_chars:
            docs.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current.strip():
        docs.append(current)
    if not docs:
        raise ObliviateError(f"{path} ({dataset}) is empty")
    return docs


def _muse_qa(path: Path, dataset: str) -> List[QA]:
    return [QA(_field(r, "question", path, n), _field(r, "answer", path, n))
            for n, r in enumerate(read_records(path, dataset), 1)]


def make_muse(corpus: str, forget: str = "forget", seed: int = 0, data_root: Optional[str] = None,
              doc_chars: int = 2000, **unused) -> LMTask:
    """MUSE (Shi et al. 2024, arXiv 2407.06460) News or Books from its published files (see the module docstring).

    Target = forget + retain documents, gold = retain documents. VerbMem reads ``verbmem/forget.json``; KnowMem the
    ``knowmem`` QA with the in-context examples of ``retain_qa_icl.json``; membership inference ``privleak/`` when
    present, else the raw forget and holdout documents."""
    task = f"muse-{corpus}"
    _no_unused(task, unused)
    dataset = MUSE_NAMES[corpus]
    if forget != "forget":
        raise ObliviateError(f"task {task}: the forget spec is 'forget' (raw/forget), not {forget!r}")
    if not data_root:
        raise ObliviateError(f"task {task} needs --data-root: a folder with the {dataset} files (raw/, verbmem/, "
                             f"knowmem/)")
    root = Path(data_root)
    paths = {s: _find(root / "raw", s, dataset) for s in ("forget", "retain1", "holdout")}
    retain2 = _find(root / "raw", "retain2", dataset, required=False)
    files = {"verbmem": root / "verbmem" / "forget.json", "forget_qa": root / "knowmem" / "forget_qa.json",
             "retain_qa": root / "knowmem" / "retain_qa.json"}
    for path in files.values():
        if not path.is_file():
            raise ObliviateError(f"missing file {path} of the {dataset} dataset: put its published files under "
                                 f"--data-root")
    docs = {s: _documents(p, dataset, doc_chars) for s, p in paths.items()}
    retain = docs["retain1"] + (_documents(retain2, dataset, doc_chars) if retain2 else [])
    verbmem = [(_field(r, "prompt", files["verbmem"], n), _field(r, "gt", files["verbmem"], n))
               for n, r in enumerate(read_records(files["verbmem"], dataset), 1)]
    icl = root / "knowmem" / "retain_qa_icl.json"
    shots = _muse_qa(icl, dataset) if icl.is_file() else []
    privleak = {s: root / "privleak" / f"{s}.json" for s in ("forget", "holdout")}
    membership = {}
    if all(p.is_file() for p in privleak.values()):
        membership = {s: _documents(p, dataset, doc_chars) for s, p in privleak.items()}
    return LMTask(name=task, forget=forget, seed=seed, forget_examples=[("", d) for d in docs["forget"]],
                  retain_examples=[("", d) for d in retain], holdout_examples=[("", d) for d in docs["holdout"]],
                  forget_qa=_muse_qa(files["forget_qa"], dataset), retain_qa=_muse_qa(files["retain_qa"], dataset),
                  verbmem=verbmem, few_shot=shots, membership=membership,
                  config={"data_root": str(root.resolve()), "doc_chars": doc_chars})


@TASKS.register("muse-news")
def make_muse_news(forget: str = "forget", seed: int = 0, data_root: Optional[str] = None, doc_chars: int = 2000,
                   **unused) -> LMTask:
    """MUSE-News (BBC articles) from its published files; see :func:`make_muse`."""
    return make_muse("news", forget, seed, data_root, doc_chars, **unused)


@TASKS.register("muse-books")
def make_muse_books(forget: str = "forget", seed: int = 0, data_root: Optional[str] = None, doc_chars: int = 2000,
                    **unused) -> LMTask:
    """MUSE-Books (Harry Potter) from its published files; see :func:`make_muse`."""
    return make_muse("books", forget, seed, data_root, doc_chars, **unused)

__all__ = ["make_tofu", "make_muse", "read_records", "TOFU_SPLITS"]
