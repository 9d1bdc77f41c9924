"""Prose spans around a cursor: word, sentence, paragraph and (Markdown) section, in characters;
expand/shrink walk them the way Structure walks syntax nodes."""

from __future__ import annotations

import re
from collections.abc import Sequence

from editor.structure import NodeSpan, NoTarget, Structure
from editor.text import EditorError, check_span

UNITS = ("word", "sentence", "paragraph", "section")

_WORD = re.compile(r"\w+(?:['’\-]\w+)*")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
# A sentence ends at . ! ? … (or their CJK forms), plus closing quotes and brackets, then space or the end.
_SENTENCE_END = re.compile(r"(?:[.!?…]+[\"'”’)\]]*(?=\s|$)|[。！？]+[」』”’)]*)")
# Short words ending in "." that usually do not end a sentence.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "no", "fig", "cf"})


def word(text: str, cursor: int) -> NodeSpan:
    """The word under the cursor, or the word that ends right before it."""
    check_span(text, cursor, cursor)
    for m in _WORD.finditer(text):
        if m.start() <= cursor <= m.end():
            return NodeSpan(m.start(), m.end(), "word", f"word: {m.group()[:40]}")
        if m.start() > cursor:
            break
    raise NoTarget(f"no word at character {cursor}")


def paragraph(text: str, cursor: int) -> NodeSpan:
    """The paragraph around the cursor: lines between blank lines, without outer whitespace."""
    check_span(text, cursor, cursor)
    start, end = 0, len(text)
    for m in _BLANK_LINE.finditer(text):
        if m.end() <= cursor:
            start = m.end()
        elif m.start() >= cursor:
            end = m.start()
            break
        else:  # the cursor is on a blank line
            raise NoTarget(f"character {cursor} is between paragraphs")
    piece = text[start:end]
    if not piece.strip():
        raise NoTarget(f"no paragraph at character {cursor}")
    s = start + len(piece) - len(piece.lstrip())
    e = end - (len(piece) - len(piece.rstrip()))
    return NodeSpan(s, e, "paragraph", f"paragraph: {text[s:e].split(chr(10), 1)[0][:40]}")


def _sentence_ends(text: str, start: int, end: int) -> list[int]:
    ends = []
    for m in _SENTENCE_END.finditer(text, start, end):
        before = re.search(r"([\w.]+)\.$", text[start:m.start() + 1])
        if m.group().startswith(".") and m.group() == "." and before and before.group(1).lower() in _ABBREVIATIONS:
            continue
        ends.append(m.end())
    return ends


def sentence(text: str, cursor: int) -> NodeSpan:
    """The sentence around the cursor, inside its paragraph, without surrounding spaces."""
    para = paragraph(text, cursor)
    start = para.start
    for end in _sentence_ends(text, para.start, para.end) + [para.end]:
        if cursor <= end or end == para.end:
            piece = text[start:end]
            s = start + len(piece) - len(piece.lstrip())
            return NodeSpan(s, s + len(piece.strip()), "sentence", f"sentence: {text[s:end].strip()[:40]}")
        start = end
    raise NoTarget(f"no sentence at character {cursor}")  # unreachable: the loop ends at para.end


def section(text: str, cursor: int) -> NodeSpan:
    """The innermost Markdown section (heading and everything under it) around the cursor."""
    check_span(text, cursor, cursor)
    st = Structure(text, "markdown")
    node = next((n for n in st.ancestors(st.node(cursor)) if n.type == "section"), None)
    if node is None or node.named_child_count == 0 or "heading" not in node.named_children[0].type:
        raise NoTarget(f"character {cursor} is not under a Markdown heading")
    span = st.span(node)
    end = span.start + len(text[span.start:span.end].rstrip())
    heading = text[span.start:end].split("\n", 1)[0]
    return NodeSpan(span.start, end, "section", f"section: {heading.lstrip('#').strip()[:40]}")


def prose_span(text: str, cursor: int, unit: str) -> NodeSpan:
    """The span of a unit ("word", "sentence", "paragraph", "section") around the cursor."""
    funcs = {"word": word, "sentence": sentence, "paragraph": paragraph, "section": section}
    if unit not in funcs:
        raise NoTarget(f"unknown prose unit {unit!r}; units: {', '.join(UNITS)}")
    return funcs[unit](text, cursor)



def units_around(text: str, cursor: int, units: Sequence[str] = UNITS) -> list[NodeSpan]:
    """The `units` around a cursor, smallest first, each strictly larger than the one before (a
    one-sentence paragraph is listed once); a unit that does not apply there is left out."""
    out: list[NodeSpan] = []
    for unit in units:
        try:
            span = prose_span(text, cursor, unit)
        except NoTarget:
            continue
        if not out or (span.start <= out[-1].start and out[-1].end <= span.end
                       and (span.start, span.end) != (out[-1].start, out[-1].end)):
            out.append(span)
    return out


def expand(text: str, start: int, end: int, units: Sequence[str] = UNITS) -> NodeSpan | None:
    """The smallest unit around the selection's start that is strictly larger than the selection."""
    check_span(text, start, end)
    return next((s for s in units_around(text, start, units)
                 if s.start <= start and end <= s.end and (s.start, s.end) != (start, end)), None)


def shrink(text: str, start: int, end: int, units: Sequence[str] = UNITS,
           toward: int | None = None) -> NodeSpan | None:
    """The largest unit around a cursor (default: the selection's start) that lies strictly inside the selection."""
    check_span(text, start, end)
    toward = start if toward is None else toward
    if not start <= toward <= end:
        raise EditorError(f"shrink toward {toward}: the cursor is outside the selection ({start}, {end})")
    inside = [s for s in units_around(text, toward, units)
              if start <= s.start and s.end <= end and (s.start, s.end) != (start, end)]
    return inside[-1] if inside else None
