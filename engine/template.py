"""Templates: a document whose holes (`⟨⟩` by default) are the spans, every hole filled in one run.

A marker is an opening and a closing string, given as one string split in half ("⟨⟩", "{{}}").
Each hole's span covers its marker, so the filled document has no markers left and offsets stay
those of the text the user sent. What a hole holds says how long its fill is: nothing, the
edit's `length` (else DEFAULT_HOLE_TOKENS); a whole number N, N tokens; other text (a draft to
redo), as many tokens as the hole takes, its marker included.
"""
from __future__ import annotations

from .canvas import Span
from .limits import check_span_length

DEFAULT_MARKER = "\u27e8\u27e9"  # ⟨⟩
DEFAULT_HOLE_TOKENS = 4           # a short value: a name, a number, a few words


def split_marker(marker: str) -> tuple[str, str]:
    """The opening and closing halves of `marker`; ValueError names the field when it has none."""
    if not isinstance(marker, str) or len(marker) < 2 or len(marker) % 2:
        raise ValueError(f'"hole_marker" must be an opening and a closing string of equal length, '
                         f"as one string (default {DEFAULT_MARKER!r}), got {marker!r}")
    half = len(marker) // 2
    opening, closing = marker[:half], marker[half:]
    if opening == closing:
        raise ValueError(f'"hole_marker" {marker!r}: the opening and closing halves must differ')
    return opening, closing


def holes(text: str, marker: str = DEFAULT_MARKER, length: int | None = None) -> list[Span]:
    """One span per hole of `text`, in order; ValueError (naming "template") when there is none, a
    hole is not closed, or a closing marker has no opening."""
    opening, closing = split_marker(marker)
    spans: list[Span] = []
    at = 0
    while True:
        start = text.find(opening, at)
        stray = text.find(closing, at)
        if stray != -1 and (start == -1 or stray < start):
            raise ValueError(f'"template": a closing {closing!r} at {stray} has no opening {opening!r} before it')
        if start == -1:
            break
        end = text.find(closing, start + len(opening))
        nested = text.find(opening, start + len(opening))
        if end == -1 or (nested != -1 and nested < end):
            raise ValueError(f'"template": the hole opened at {start} is not closed with {closing!r}')
        inside = text[start + len(opening):end]
        end += len(closing)
        n = hole_length(inside, length, start)
        check_span_length(start, end, n)
        spans.append(Span(start, end, n))
        at = end
    if not spans:
        raise ValueError(f'"template": the text has no holes; mark each with {opening + closing!r}')
    return spans


def hole_length(inside: str, length: int | None, start: int) -> int | None:
    """The tokens a hole is filled with (see the module's docstring); None: the hole's own count."""
    if not inside:
        return length if length is not None else DEFAULT_HOLE_TOKENS
    if inside.strip().isdigit():
        n = int(inside.strip())
        if n < 1:
            raise ValueError(f'"template": the hole at {start} asks for {n} tokens; give 1 or more')
        return n
    return None
