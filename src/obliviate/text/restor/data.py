"""RESTOR's data and metrics: a clean model, a corrupted model, and whether unlearning the corruption RECOVERS the
clean model's answers (Rezaei et al., "RESTOR: Knowledge Recovery in Machine Unlearning", 2024, arXiv 2411.00204).

Protocol: the clean model knows a set of facts; continued training on documents that state wrong facts about a few
entities (corruption documents), mixed with correct documents, gives the corrupted model; each unlearning method then
unlearns the corruption documents (the forget set, the correct documents being the retain set). Good unlearning brings
back the clean answers; a model that answers neither the clean nor the corrupted value has forgotten both, which is not
recovery.

Data, offline and deterministic per seed:

- ``authors``: the fictitious authors of the ``authors`` task (the clean model is that task's target model).
  ``n_corrupt`` trained authors are chosen; each of their ``attributes`` gets ONE wrong value, another author's value
  of that attribute, used consistently in every corruption document (the author's training answers that state the
  attribute, rewritten) and probe. The correct documents are the rest of the target's training examples.
- ``jsonl``: user files under ``--data-root`` (one JSON object per line):

  * ``clean.jsonl``: what the clean model is trained on, and the correct documents mixed into the corruption training
    (the retain set); ``{"text": ...}`` or ``{"question": ..., "answer": ...}`` (one kind per file).
  * ``corruption.jsonl``: the documents stating wrong facts (the forget set); same record kinds.
  * ``probes.jsonl``: ``{"entity", "question", "clean", "corrupted"}`` (strings): the question about an entity, its
    clean and its corrupted fact; optional ``"random"`` (another wrong value; default: drawn per seed from the other
    probes' values) and ``"clean_answer"``, ``"corrupted_answer"``, ``"random_answer"`` (the answer texts whose
    log-probabilities are compared; default: the values themselves). A record without ``"corrupted"`` is a retain
    probe: a fact no document contradicts, whose accuracy is the model's utility.

Metrics (no external judge): a probe is answered by greedy decoding after ``Question: q\\nAnswer:``; it states a value
when the normalised value appears in the normalised answer as whole words (:func:`metrics.fact_match`). Per entity and
overall: fact accuracy (states the clean value), the rate of stating the corrupted value, the fraction stating neither,
the mean per-token log-probability of the clean, corrupted and random answer, and the recovery ratio
(acc_unlearned - acc_corrupted) / (acc_clean - acc_corrupted), NaN when the corruption did not lower the accuracy.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...errors import ObliviateError
from ..data.tasks import _TEMPLATES, QA, Example, LMTask, make_task, qa_example, read_jsonl

RESTOR_TASKS = ("authors", "jsonl")
CORRUPTIBLE = ("city", "year", "genre", "father", "mother", "award", "theme", "language", "children", "pub1")
RESTOR_FILES = ("clean", "corruption", "probes")


@dataclass
class RestorSettings:
    """RESTOR's own settings (``--set restor.KEY=VALUE``)."""
    n_corrupt: int = 4                        # authors: entities whose facts are corrupted
    attributes: str = "city,genre,award,language"  # authors: the corrupted attributes (comma list)
    corrupt_epochs: int = 10                  # continued training of the clean model on corruption + correct docs
    corrupt_lr: Optional[float] = None        # its learning rate (None: the recipe's)
    max_new_tokens: int = 24                  # greedy answer length

    def check(self) -> None:
        names = self.attribute_list()
        bad = [a for a in names if a not in CORRUPTIBLE]
        if bad or not names:
            raise ObliviateError(f"restor.attributes: {bad[0] if bad else '(empty)'!r} is not a corruptible "
                                 f"attribute; use a comma list of {', '.join(CORRUPTIBLE)}")
        if self.n_corrupt < 1 or self.corrupt_epochs < 1 or self.max_new_tokens < 1:
            raise ObliviateError("restor: n_corrupt, corrupt_epochs and max_new_tokens must be >= 1")
        if self.corrupt_lr is not None and not self.corrupt_lr > 0:
            raise ObliviateError("restor.corrupt_lr must be > 0")

    def attribute_list(self) -> List[str]:
        return [a.strip() for a in self.attributes.split(",") if a.strip()]


@dataclass(frozen=True)
class Probe:
    """A question about ``entity`` with its clean, corrupted and random values, and the answer texts scored for each."""
    entity: str
    question: str
    clean: str
    corrupted: str
    random: str
    clean_answer: str
    corrupted_answer: str
    random_answer: str


@dataclass
class RestorData:
    name: str
    seed: int
    clean_examples: List[Example]        # what the clean model learns
    corruption_examples: List[Example]   # wrong facts: the forget set of unlearning
    correct_examples: List[Example]      # mixed into the corruption training: the retain set of unlearning
    probes: List[Probe]
    retain_probes: List[QA] = field(default_factory=list)  # facts nothing contradicts (utility)
    corruption_qa: List[QA] = field(default_factory=list)  # the corruption documents as QA (WHP's anchored terms)
    base_task: Optional[LMTask] = None   # authors: the task whose target model is the clean model
    config: dict = field(default_factory=dict)

    def unlearning_task(self) -> LMTask:
        """The forget set (corruption documents) and retain set (correct documents) the methods read."""
        return LMTask(name=self.name, forget="corruption", seed=self.seed,
                      forget_examples=list(self.corruption_examples), retain_examples=list(self.correct_examples),
                      holdout_examples=[], forget_qa=list(self.corruption_qa))

    def identity(self) -> dict:
        """What fixes the cell's data: a hash of every document and probe, and the sizes."""
        blob = json.dumps([sorted(map(list, self.clean_examples)), sorted(map(list, self.corruption_examples)),
                           sorted(map(list, self.correct_examples)), [asdict(p) for p in self.probes],
                           [q.as_dict() for q in self.retain_probes]], sort_keys=True)
        return {"data": hashlib.sha256(blob.encode()).hexdigest()[:16], "n_clean": len(self.clean_examples),
                "n_corruption": len(self.corruption_examples), "n_correct": len(self.correct_examples),
                "n_probes": len(self.probes), "n_entities": len({p.entity for p in self.probes}),
                "n_retain_probes": len(self.retain_probes)}


# ------------------------------------------------------------------------------------------------------- authors

def corrupt_authors(task: LMTask, settings: RestorSettings, seed: int) -> RestorData:
    """Corrupt ``n_corrupt`` trained authors of an ``authors`` task: one wrong value per (author, attribute), drawn
    from the other authors' values of that attribute, stated consistently by every corruption document and probe."""
    authors, attrs = task.entities, settings.attribute_list()
    if not authors:
        raise ObliviateError("restor: the task has no entity records to corrupt")
    if settings.n_corrupt >= len(authors):
        raise ObliviateError(f"restor.n_corrupt={settings.n_corrupt}: must be below the {len(authors)} trained "
                             f"authors (the others keep their facts)")
    rng = np.random.default_rng([seed, 2411])
    chosen = sorted(int(i) for i in rng.choice(len(authors), size=settings.n_corrupt, replace=False))
    corruption, replaced, probes, corruption_qa = [], set(), [], []
    for i in chosen:
        clean = authors[i]
        values = {a: sorted({str(o[a]) for o in authors} - {str(clean[a])}) for a in attrs}
        if any(len(v) < 2 for v in values.values()):
            raise ObliviateError("restor: an attribute has fewer than 2 wrong values among the authors")
        wrong = {a: values[a][int(rng.integers(len(values[a])))] for a in attrs}
        corrupted = {**clean, **wrong}
        for q, a, _, attr in _TEMPLATES:
            if not any("{" + x + "}" in q + a for x in attrs):
                continue
            right = qa_example(QA(q.format(**clean), a.format(**clean)))
            replaced.add(right)
            corruption_qa.append(QA(q.format(**corrupted), a.format(**corrupted)))
            corruption.append(qa_example(corruption_qa[-1]))
            if attr in attrs:
                others = [v for v in values[attr] if v != wrong[attr]]
                rand = others[int(rng.integers(len(others)))]
                probes.append(Probe(clean["name"], q.format(**clean), str(clean[attr]), wrong[attr], rand,
                                    a.format(**clean), a.format(**{**clean, attr: wrong[attr]}),
                                    a.format(**{**clean, attr: rand})))
    correct = [e for e in task.target_examples if e not in replaced]
    names = {authors[i]["name"] for i in chosen}
    retain = [q for q in task.forget_qa + task.retain_qa
              if q.fact and not any(n in q.question or n in q.answer for n in names)]
    return RestorData(name="authors", seed=seed, clean_examples=list(task.target_examples),
                      corruption_examples=corruption, correct_examples=correct, probes=probes,
                      retain_probes=retain, corruption_qa=corruption_qa, base_task=task,
                      config={"corrupted": sorted(names), "attributes": attrs})


# --------------------------------------------------------------------------------------------------------- jsonl

def _documents(path: Path) -> List[Example]:
    recs = read_jsonl(path)
    kind = "text" if "text" in recs[0] else "qa"
    required = ("text",) if kind == "text" else ("question", "answer")
    recs = read_jsonl(path, required)
    if kind == "text":
        return [("", r["text"]) for r in recs]
    return [qa_example(QA(r["question"], r["answer"])) for r in recs]


def read_probes(path: Path, seed: int) -> tuple:
    """(corruption probes, retain probes) of probes.jsonl; see the module docstring for the schema."""
    recs = read_jsonl(path, ("entity", "question", "clean"))
    probes, retain = [], []
    pool = sorted({r["clean"] for r in recs} | {r["corrupted"] for r in recs if isinstance(r.get("corrupted"), str)})
    rng = np.random.default_rng([seed, 2411])
    for n, r in enumerate(recs, 1):
        for key in ("corrupted", "random", "clean_answer", "corrupted_answer", "random_answer"):
            if key in r and (not isinstance(r[key], str) or not r[key]):
                raise ObliviateError(f"{path}:{n}: field {key!r} must be a non-empty string")
        if "corrupted" not in r:
            retain.append(QA(r["question"], r.get("clean_answer", r["clean"]), fact=r["clean"]))
            continue
        if r["corrupted"] == r["clean"]:
            raise ObliviateError(f"{path}:{n}: the corrupted value equals the clean value {r['clean']!r}")
        rand = r.get("random")
        if rand is None:
            others = [v for v in pool if v not in (r["clean"], r["corrupted"])]
            if not others:
                raise ObliviateError(f"{path}:{n}: no 'random' value and no other probe value to draw one from")
            rand = others[int(rng.integers(len(others)))]
        probes.append(Probe(r["entity"], r["question"], r["clean"], r["corrupted"], rand,
                            r.get("clean_answer", r["clean"]), r.get("corrupted_answer", r["corrupted"]),
                            r.get("random_answer", rand)))
    if not probes:
        raise ObliviateError(f"{path}: no probe has a 'corrupted' value")
    return probes, retain


def check_files(data_root: Optional[str]) -> Path:
    """The data folder, with every RESTOR file present (one error naming the missing ones)."""
    if not data_root:
        raise ObliviateError("restor --task jsonl needs --data-root: a folder with clean.jsonl, corruption.jsonl "
                             "and probes.jsonl")
    root = Path(data_root)
    missing = [str(root / f"{n}.jsonl") for n in RESTOR_FILES if not (root / f"{n}.jsonl").is_file()]
    if missing:
        raise ObliviateError(f"restor: missing data file(s) {', '.join(missing)}")
    return root


def read_restor_jsonl(data_root: Optional[str], seed: int = 0) -> RestorData:
    root = check_files(data_root)
    clean = _documents(root / "clean.jsonl")
    corruption = _documents(root / "corruption.jsonl")
    probes, retain = read_probes(root / "probes.jsonl", seed)
    return RestorData(name="jsonl", seed=seed, clean_examples=clean, corruption_examples=corruption,
                      correct_examples=list(clean), probes=probes, retain_probes=retain,
                      config={"data_root": str(root.resolve())})


def make_restor(task: str, seed: int, settings: RestorSettings, options: dict,
                data_root: Optional[str] = None) -> RestorData:
    if task == "authors":
        return corrupt_authors(make_task("authors", "forget10", seed=seed, **options), settings, seed)
    if task == "jsonl":
        return read_restor_jsonl(data_root, seed)
    raise ObliviateError(f"restor: task {task!r} is not supported; use {' or '.join(RESTOR_TASKS)}")


# ------------------------------------------------------------------------------------------------------- metrics

def recovery_ratio(acc_unlearned: float, acc_clean: float, acc_corrupted: float) -> float:
    """(acc_unlearned - acc_corrupted) / (acc_clean - acc_corrupted): 1 = the clean accuracy is back, 0 = still
    corrupted; NaN when the corruption did not lower the accuracy (nothing to recover)."""
    drop = acc_clean - acc_corrupted
    if not drop > 1e-12:
        return float("nan")
    return (acc_unlearned - acc_corrupted) / drop


def probe_outcomes(answers: Sequence[str], probes: Sequence[Probe]) -> Dict[str, np.ndarray]:
    """Per probe: does the greedy answer state the clean value, the corrupted value, neither of them."""
    from ..eval.metrics import fact_match
    clean = np.array([fact_match(a, p.clean) for a, p in zip(answers, probes)])
    corrupted = np.array([fact_match(a, p.corrupted) for a, p in zip(answers, probes)])
    return {"clean": clean, "corrupted": corrupted, "neither": (1 - clean) * (1 - corrupted)}


def summarise(outcomes: Dict[str, np.ndarray], logprobs: Dict[str, np.ndarray], probes: Sequence[Probe]) -> dict:
    """Overall and per-entity means of the outcomes and option log-probabilities."""
    def means(idx):
        out = {"acc": float(outcomes["clean"][idx].mean()), "corrupted_rate": float(outcomes["corrupted"][idx].mean()),
               "neither": float(outcomes["neither"][idx].mean())}
        out.update({f"lp_{k}": float(v[idx].mean()) for k, v in logprobs.items()})
        return out
    entities = sorted({p.entity for p in probes})
    per = {e: {**means(np.array([p.entity == e for p in probes])),
               "n": sum(p.entity == e for p in probes)} for e in entities}
    return {**means(np.ones(len(probes), dtype=bool)), "per_entity": per}


def add_recovery(metrics: dict, clean: dict, corrupted: dict) -> dict:
    """``recovery`` overall and per entity from this model's, the clean and the corrupted model's accuracies; a note
    where it is undefined."""
    out = dict(metrics)
    out["recovery"] = recovery_ratio(metrics["acc"], clean["acc"], corrupted["acc"])
    if math.isnan(out["recovery"]):
        out["recovery_note"] = (f"undefined: the corruption did not lower the accuracy (clean {clean['acc']:.3f}, "
                                f"corrupted {corrupted['acc']:.3f})")
    per = {}
    for e, m in metrics["per_entity"].items():
        per[e] = {**m, "recovery": recovery_ratio(m["acc"], clean["per_entity"][e]["acc"],
                                                  corrupted["per_entity"][e]["acc"])}
    out["per_entity"] = per
    return out


__all__ = ["RestorSettings", "Probe", "RestorData", "corrupt_authors", "read_restor_jsonl", "read_probes",
           "make_restor", "recovery_ratio", "probe_outcomes", "summarise", "add_recovery", "RESTOR_TASKS"]
