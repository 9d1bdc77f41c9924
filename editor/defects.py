"""Prose defects a reader rejects at sight, in and around an edited span: a doubled word, a
repeated 2-4-word loop, a broken word (a piece glued onto a word into a non-word: "filtereded",
"backback"), a line break the selection did not have, a run of filler marks ("####")."""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_JUNK = re.compile(r"([^\w\s])\1{3,}")
_BLANK = re.compile(r"\n[ \t]*\n")
REPEAT_WINDOW = 6  # words: a word said again this close reads as a slip
COMMON = frozenset("the and for that with this you are was were not but can has have had its from "
                   "will all one our their they them his her she him who what which when where how".split())
NEAR = 40  # characters either side of the span where a defect may start (a word doubled across its edge)


@dataclass(frozen=True)
class Defect:
    kind: str   # "doubled word" | "loop" | "broken word" | "line break" | "junk"
    start: int  # characters of the document
    end: int

    def __str__(self) -> str:
        return self.kind


def defects(text: str, start: int, end: int, original: str = "",
            known: Collection[str] = ()) -> list[Defect]:
    """Defects of `text` that touch its span [start, end) and were not in the span's `original`
    text. `known`: lower-case words taken as real (the model's whole-word tokens, say); words of
    `text` outside the span and of `original` count as known too."""
    lo = max(0, start - NEAR)
    words = [(m.start() + lo, m.end() + lo, m.group()) for m in _WORD.finditer(text[lo:end + NEAR])]
    touches = [a < end and b > start or a == b == start for a, b, _ in words]
    out = _doubled(words, touches, original) + _loops(words, touches)
    seen = {w.lower() for w in _WORD.findall(text[:start] + " " + text[end:] + " " + original)}
    out += [Defect("broken word", a, b) for (a, b, w), t in zip(words, touches)
            if t and w.lower() not in seen and w.lower() not in known and glued(w)]
    breaks = r"\n" if "\n" not in original else _BLANK.pattern if not _BLANK.search(original) else None
    if breaks is not None:
        out += [Defect("line break", m.start(), m.end()) for m in re.compile(breaks).finditer(text, start, end)]
    out += [Defect("junk", m.start() + start, m.end() + start) for m in _JUNK.finditer(text, start, end)
            if m.group() not in original]
    return sorted(out, key=lambda d: d.start)


def _doubled(words: list[tuple[int, int, str]], touches: list[bool], original: str) -> list[Defect]:
    """A word said again within REPEAT_WINDOW words, the later one in the span, more often than
    the original said it ("functions functions", "tested it yet, but I'm sure yet"); right after
    itself any word counts, and another form of it ("removes remove"); further apart only words
    that are not COMMON."""
    said = [w.lower() for w in _WORD.findall(original)]
    out = []
    for j in range(1, len(words)):
        w = words[j][2].lower()
        for i in range(max(0, j - REPEAT_WINDOW), j):
            near = i == j - 1 and words[i][1] >= words[j][0] - 4
            if near and same_stem(words[i][2].lower(), w) and touches[j]:  # "removes remove"
                out.append(Defect("doubled word", words[j][0], words[j][1]))
                break
            if words[i][2].lower() == w and touches[j] and (near or len(w) > 2 and w not in COMMON) \
                    and said.count(w) < 2:
                out.append(Defect("doubled word", words[j][0], words[j][1]))
                break
    return out


def same_stem(a: str, b: str) -> bool:
    """Two different forms of one word ("removes", "remove"): they share all but two letters of the
    shorter, and at least four."""
    k = len(os.path.commonprefix([a, b]))
    return a != b and k >= 4 and k >= min(len(a), len(b)) - 2


def _loops(words: list[tuple[int, int, str]], touches: list[bool]) -> list[Defect]:
    """A run of 2-4 words said again right after itself ("of the code of the code"): the repeat."""
    lower = [w.lower() for _, _, w in words]
    out = []
    for n in (2, 3, 4):
        for i in range(len(words) - 2 * n + 1):
            if lower[i:i + n] == lower[i + n:i + 2 * n] and any(touches[i:i + 2 * n]):
                out.append(Defect("loop", words[i + n][0], words[i + 2 * n - 1][1]))
    return out


def glued(word: str) -> bool:
    """A word that ends in a piece said twice ("filter-ed-ed", stem of 2+ letters, piece of 2+) or
    starts with one ("back-back", piece of 3+): the mark of a token glued onto its own neighbour."""
    w = word.lower()
    for n in range(2, len(w) // 2 + 1):
        if len(w) - 2 * n >= 2 and w[-n:] == w[-2 * n:-n]:
            return True
        if n >= 3 and w[:n] == w[n:2 * n]:
            return True
    return False
