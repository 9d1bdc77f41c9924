"""The checker that engine.correct's rounds call, per language: what in an edited span a reader
rejects at sight, as character ranges to redo (editor.defects for prose; for code, new tree-sitter
ERROR / MISSING nodes, Python's own compiler, and bracket balance)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from editor.compiles import unbalanced
from editor.defects import defects
from editor.languages import get_language, language_for
from editor.structure import COMMENTS, Structure

__all__ = ["Finding", "checker_for", "findings", "language_for"]
from editor.validity import check_edit

BIG_ERROR = 20  # characters: a wider ERROR node names the place it starts, not everything it wraps

Span = tuple[int, int]
# A place to redo, as engine.correct.Checker returns it: [start, end), and words it may not start with.
Place = tuple[int, int] | tuple[int, int, frozenset[str]]


@dataclass(frozen=True)
class Finding:
    kind: str   # a prose defect's kind, or "does not parse", "unbalanced", "opens a block"
    start: int  # characters of the edited document
    end: int
    # Words the redone text may not start with at this place (the engine bans every token whose text
    # begins with one of them there): a round that bans only the token a slot had can swap one
    # block keyword for the next (`for` -> `while` -> `if`).
    not_starting: frozenset[str] = frozenset()


def findings(language: str, before: str, after: str, span: Span, new_span: Span,
             known: Collection[str] = ()) -> list[Finding]:
    """What is wrong with the edit that replaced `span` of `before` by `new_span` of `after`."""
    info = get_language(language)
    if info.module is None or info.prose:
        original = before[span[0]:span[1]]
        return [Finding(d.kind, d.start, d.end) for d in defects(after, *new_span, original, known)]
    out = []
    for p in check_edit(before, after, info.name, span, new_span).errors:
        end = p.end if p.end - p.start <= BIG_ERROR else p.start
        out.append(Finding("does not parse", p.start, end))
    a = new_span[0]
    old, new = before[span[0]:span[1]], after[new_span[0]:new_span[1]]
    out += [Finding("unbalanced", a + x, a + y) for x, y in unbalanced(old, new)]
    if out:
        out = past_comments(out, after, comments(after, info.name, new_span))
    if out and info.name == "python":
        out += opened_block(old, new, a)
    return out


def past_comments(found: list[Finding], after: str, notes: list[Span]) -> list[Finding]:
    """A parser stops where the line ends, past a comment the edit wrote, and a missing closer is
    missing at the span's end: redoing the comment's tail there leaves it a comment (`x = y and not
    # y`). Such a finding names the comment instead: it is what hides the unfinished code."""
    out = []
    for f in found:
        note = next(((a, b) for a, b in notes if a <= f.start and not after[b:f.start].strip()), None)
        out.append(dataclasses.replace(f, start=note[0], end=note[1]) if note else f)
    return out


def comments(text: str, language: str, within: Span) -> list[Span]:
    """[start, end) of each comment that lies inside `within` of `text` (tree-sitter's own nodes)."""
    st = Structure(text, language)
    out: list[Span] = []
    stack = [st.tree.root_node]
    while stack:
        node = stack.pop()
        place = st.span(node)
        if place.end < within[0] or place.start > within[1]:
            continue
        if node.type in COMMENTS and within[0] <= place.start and place.end <= within[1]:
            out.append((place.start, place.end))
        stack.extend(node.children)
    return out


# Python statements that open an indented block: on one line, only a simple statement can follow the colon.
BLOCK_KEYWORDS = frozenset({"if", "elif", "else", "for", "while", "with", "try", "except", "finally", "def",
                            "class", "async"})
# Soft keywords: also plain names (`match = pattern.match(s)`), a block only when a subject follows.
SOFT_BLOCK_KEYWORDS = re.compile(r"(match|case)\b(?!\s*[=.,:)\]]|\s*$|[(\[])")


def opened_block(old: str, new: str, at: int) -> list[Finding]:
    """A one-line span whose statement the edit turned into a block header (`if x:`, `for ...:`) that
    does not parse: one line cannot hold the block it opens (the scope constraint keeps it one line),
    and the rounds would redo only the end where the parser stops (`if x: # # #`), so its keyword is
    flagged too, and no block keyword may start the statement again (the original's own excepted).
    `at`: where `new` starts."""
    if "\n" in old.strip("\n"):
        return []
    line = new.lstrip()
    word = re.match(r"[A-Za-z_]\w*", line)
    first = old.split()[:1]
    if word is None or first == [word.group()]:
        return []
    if word.group() not in BLOCK_KEYWORDS and not SOFT_BLOCK_KEYWORDS.match(line):
        return []
    start = at + len(new) - len(line)
    return [Finding("opens a block", start, start + len(word.group()), BLOCK_KEYWORDS.difference(first))]


def checker_for(language: str, known: Collection[str] = ()) -> Callable[[str, str, Span, Span], list[Place]]:
    """engine.correct.Checker for `language` (UnknownLanguage at once for a name it does not know);
    `known`: real words for the broken-word test (engine.scope.whole_words of the model's codec)."""
    name = get_language(language).name

    def check(before: str, after: str, span: Span, new_span: Span) -> list[Place]:
        return [(f.start, f.end, f.not_starting) if f.not_starting else (f.start, f.end)
                for f in findings(name, before, after, span, new_span, known)]
    return check
