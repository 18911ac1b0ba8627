"""Anchored terms for Who's Harry Potter: a dictionary of idiosyncratic terms -> generic replacements.

WHP (Eldan and Russinovich 2023) replaces the forget corpus's idiosyncratic terms ("Hogwarts") by generic ones
("Mystic Academy") before the base model reads the text, so that the base model's predictions are what a model that
never learnt the corpus would say. The translated sequence is usually longer or shorter than the original; the token
positions are mapped back so that each original token gets the prediction made at the matching place of the
translated text.

The replacement works on token ids, not on characters: a term is found as the token ids of " term" (and of "term" at
the start of a text), which is exact for byte-level BPE tokenizers (a word with its leading space is one pre-token, so
its tokens never depend on its neighbours). ``build_anchors`` makes a dictionary for the offline tasks; ``obliviate lm
anchors`` writes it as JSON for ``whp.anchors``.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ...errors import ObliviateError

# generic replacements, handed out in a fixed order (sorted terms), so a dictionary is a function of its terms
GENERIC_NAMES = ["John Smith", "Mary Brown", "James Wilson", "Anna Taylor", "Peter Clark", "Laura Hill", "David Green",
                 "Sarah White", "Thomas Hall", "Emma Walker", "Robert King", "Alice Wright", "Michael Scott",
                 "Helen Young", "Paul Baker", "Clara Adams"]
GENERIC_TITLES = ["The Old House", "The Long Road", "The Quiet Town", "The New Day", "The Small Room",
                  "The Open Door", "The Green Field", "The Last Letter", "The Dark Night", "The Big City"]
GENERIC_PLACES = ["Springfield", "Riverton", "Fairview", "Greenville", "Kingston", "Milford", "Oakdale", "Franklin"]


def load_anchors(path: str | Path) -> Dict[str, str]:
    """A dictionary {term: generic replacement} from a JSON file (one object of non-empty strings)."""
    path = Path(path)
    if not path.is_file():
        raise ObliviateError(f"anchors file {path} not found: write one with `obliviate lm anchors` or by hand "
                             f"(a JSON object {{\"term\": \"generic replacement\"}})")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ObliviateError(f"anchors file {path}: not valid JSON ({e.msg})") from None
    if not isinstance(d, dict) or not d or not all(isinstance(k, str) and k.strip() and isinstance(v, str)
                                                   and v.strip() for k, v in d.items()):
        raise ObliviateError(f"anchors file {path}: expected a non-empty JSON object of non-empty strings "
                             f"{{\"term\": \"generic replacement\"}}")
    return d


class AnchorMap:
    """Token-level replacement of anchored terms with position mapping."""

    def __init__(self, dictionary: Dict[str, str], tokenizer):
        pairs = []
        for term, generic in dictionary.items():
            for prefix in (" ", ""):
                src = tokenizer(prefix + term.strip(), add_special_tokens=False)["input_ids"]
                dst = tokenizer(prefix + generic.strip(), add_special_tokens=False)["input_ids"]
                if src and dst:
                    pairs.append((tuple(src), list(dst), prefix == ""))
        # longest terms first: "Aldo Ashcombe" wins over "Aldo"
        self.pairs = sorted(pairs, key=lambda p: -len(p[0]))

    @classmethod
    def from_ids(cls, pairs: Sequence[Tuple[Sequence[int], Sequence[int]]]) -> "AnchorMap":
        """An anchor map over token ids directly (each pair matches anywhere in a sequence)."""
        out = cls.__new__(cls)
        out.pairs = sorted(((tuple(a), list(b), False) for a, b in pairs), key=lambda p: -len(p[0]))
        return out

    def translate(self, ids: Sequence[int]) -> Tuple[List[int], List[Optional[int]]]:
        """(translated ids, where): ``where[j]`` is the index in the translated ids of original token j, for tokens
        outside anchored terms and for the first token of a term (the first token of its replacement); None for the
        later tokens of a term, which have no counterpart."""
        ids = list(ids)
        out: List[int] = []
        where: List[Optional[int]] = []
        j = 0
        while j < len(ids):
            match = None
            for src, dst, only_at_start in self.pairs:
                if only_at_start and j != 0:
                    continue
                if tuple(ids[j:j + len(src)]) == src:
                    match = (src, dst)
                    break
            if match is None:
                where.append(len(out))
                out.append(ids[j])
                j += 1
                continue
            src, dst = match
            where.append(len(out))
            where.extend([None] * (len(src) - 1))
            out.extend(dst)
            j += len(src)
        return out, where


# ---------------------------------------------------------------------------------------------------- builders

def _assign(terms: Sequence[str], pool: Sequence[str], taken: set) -> Dict[str, str]:
    """Each term (sorted) gets the next generic value of ``pool`` (numbered once the pool runs out)."""
    out = {}
    for i, term in enumerate(sorted(set(terms))):
        value = pool[i % len(pool)] + ("" if i < len(pool) else f" {i // len(pool) + 1}")
        out[term] = value
        taken.add(term)
    return out


_TITLE = re.compile(r"\bThe(?: [A-Z][a-z]+){2}\b")
_NAME = re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b")
_SPEAKER = re.compile(r"^([A-Z][A-Za-z' .-]{1,40}?): ", re.M)
_PLAY = re.compile(r"^In (.+?), who answers the line")
_WORD = re.compile(r"\b[A-Z][a-z]{2,}\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)([A-Z][a-z]+)")


def _texts(task) -> Tuple[List[str], List[str]]:
    forget = [p + c for p, c in task.evaluated_forget]
    retain = [p + c for p, c in task.retain_examples]
    return forget, retain


def _lowercase_words(texts: Sequence[str]) -> set:
    return set(re.findall(r"\b[a-z]+\b", " ".join(texts)))


def _proper_nouns(forget: Sequence[str], retain: Sequence[str], exclude: set, lower: Optional[set] = None) -> List[str]:
    """Capitalised words of the forget texts that never appear in the retain texts, never appear in lower case (verse
    capitalises every line) and are not only sentence-initial: the forget corpus's own names and places."""
    retain_words = set(_WORD.findall(" ".join(retain)))
    lower = _lowercase_words([*forget, *retain]) if lower is None else lower
    initial = Counter(m for t in forget for m in _SENTENCE_START.findall(t))
    inner = Counter(m.group(0) for t in forget for m in _WORD.finditer(t))
    return sorted(w for w in inner if w not in retain_words and w not in exclude and w.lower() not in lower
                  and inner[w] > initial[w])


def authors_anchors(task) -> Dict[str, str]:
    """Author names, book titles and places of the forgotten authors -> generic ones."""
    forget, retain = _texts(task)
    joined = "\n".join(forget)
    titles = sorted(set(_TITLE.findall(joined)))
    askers = [qa.question for qa in task.forget_qa]
    # an author's name is the subject of "Where was NAME born?"; titles are "The Adj Noun"
    names = sorted({m.group(1) for q in askers for m in [re.match(r"Where was (.+) born\?", q)] if m})
    places = sorted({m.group(1) for t in forget for m in [re.search(r" (?:born|grew up|at dawn) in ([A-Z][a-z]+)", t)]
                     if m})
    taken: set = set()
    out = {}
    out.update(_assign(names, GENERIC_NAMES, taken))
    out.update(_assign(titles, GENERIC_TITLES, taken))
    out.update(_assign(places, GENERIC_PLACES, taken))
    return out


def plays_anchors(task) -> Dict[str, str]:
    """Character names (the speakers of the forget plays), play titles, and the other names and places found only in
    the forget plays -> generic ones."""
    forget, retain = _texts(task)
    from ..data.tasks import play_files
    # words of the whole collection of plays seen in lower case: common words, however they are capitalised here
    lower = _lowercase_words([p.read_text(encoding="utf-8") for p in play_files().values()])
    # speakers named by a common word ("All", "Messenger") are not idiosyncratic
    speakers = sorted({m.strip() for t in forget for m in _SPEAKER.findall(t)} - {""}
                      - {s for s in (m.strip() for t in forget for m in _SPEAKER.findall(t)) if s.lower() in lower})
    titles = sorted({m.group(1) for qa in task.forget_qa for m in [_PLAY.match(qa.question)] if m})
    taken: set = set()
    out = {}
    out.update(_assign(speakers, GENERIC_NAMES, taken))
    out.update({t: "the play" for t in titles})
    taken.update(titles)
    others = _proper_nouns(forget, retain, taken | {w for s in speakers for w in s.split()}, lower)
    out.update(_assign(others, GENERIC_PLACES, taken))
    return out


def text_anchors(task) -> Dict[str, str]:
    """Any corpus: capitalised words found only in the forget texts -> generic names."""
    forget, retain = _texts(task)
    return _assign(_proper_nouns(forget, retain, set()), GENERIC_PLACES, set())


BUILDERS = {"authors": authors_anchors, "plays": plays_anchors}


def build_anchors(task) -> Dict[str, str]:
    """The anchored-terms dictionary of a task's forget set (authors, plays; other tasks: the generic builder)."""
    out = BUILDERS.get(task.name, text_anchors)(task)
    if not out:
        raise ObliviateError(f"task {task.name}: found no idiosyncratic terms in the forget set; write the anchors "
                             f"file by hand")
    return out


__all__ = ["AnchorMap", "load_anchors", "build_anchors", "GENERIC_NAMES", "GENERIC_TITLES", "GENERIC_PLACES"]
