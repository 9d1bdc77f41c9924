"""Quality of an edit beside the base model's fluency (`DiffusionLM.fluency`): whether edited code still
parses, and agreement with a reference result (engine.tools.bench and engine.tools.eval use them)."""
from __future__ import annotations

import ast
import bisect
import itertools
import textwrap
from collections.abc import Sequence

# ---- code: does the edit break parsing? ----------------------------------------------------------

def parses(text: str) -> bool:
    try:
        ast.parse(text)
        return True
    except (SyntaxError, ValueError):  # ValueError: a NUL byte
        return False


def code_block(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Character range of whole lines around text[start:end] that parses on its own once dedented:
    the span's lines with their enclosing header (def, if, ...) and its body, widened header by
    header up to the whole text, each ended early where its tail was cut off; None when no such
    block parses.
    Starting from the header keeps a span's indentation meaningful: a dedented lone line would
    parse with an extra leading space."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return None
    offsets = list(itertools.accumulate((len(x) for x in lines), initial=0))
    first = min(bisect.bisect_right(offsets, start) - 1, len(lines) - 1)
    last = min(max(first, bisect.bisect_left(offsets, end) - 1), len(lines) - 1)
    if min_indent(lines[first:last + 1]) > 0:
        first, last = widen(lines, first, last)
    span_last = last
    while True:
        for end_line in range(last, span_last - 1, -1):  # a block cut off by the document's end
            a, b = offsets[first], offsets[end_line + 1]  # parses without its unfinished tail
            if parses(textwrap.dedent(text[a:b])):
                return a, b
        if (first, last) == (0, len(lines) - 1):
            return None
        first, last = widen(lines, first, last)


def widen(lines: Sequence[str], first: int, last: int) -> tuple[int, int]:
    """The next enclosing block: up to the nearest line indented less than the range, down to the
    end of that header's body; the whole text when there is no such header."""
    depth = min_indent(lines[first:last + 1])
    header = next((i for i in range(first - 1, -1, -1) if lines[i].strip() and indent(lines[i]) < depth), None)
    if header is None:
        return 0, len(lines) - 1
    end = last
    while end + 1 < len(lines) and (not lines[end + 1].strip() or indent(lines[end + 1]) > indent(lines[header])):
        end += 1
    return header, end


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def min_indent(lines: Sequence[str]) -> int:
    return min((indent(x) for x in lines if x.strip()), default=0)


def edit_parses(original: str, edited: str, start: int, end: int) -> bool | None:
    """Whether the block of `original` around [start, end) still parses in `edited`, which is
    `original` with only [start, end) rewritten; None when that block did not parse before."""
    block = code_block(original, start, end)
    if block is None:
        return None
    a, b = block
    return parses(textwrap.dedent(edited[a:b + len(edited) - len(original)]))


def agreement(ids: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Share of span tokens equal to the reference's token at the same place (over all spans)."""
    same = sum(sum(p == q for p, q in zip(x, y)) for x, y in zip(ids, reference))
    total = sum(max(len(x), len(y)) for x, y in zip(ids, reference))
    return same / total if total else 1.0  # two empty results agree
