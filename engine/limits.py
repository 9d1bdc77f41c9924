"""The most one request may ask of the engine, checked by arithmetic before anything is built.

The CLI, the service and the page check a request here before a slot list, a tensor or a batch
slot exists: a span of 10^9 tokens is refused by its number, never by trying to lay it out.
Settings carry their own bounds (engine/settings.py reads the step and candidate limits from here);
a canvas checks its spans' lengths against them (`canvas.check_lengths`) and a run's cost against
the per-request budget is engine/budget.py's.
"""
from __future__ import annotations

import regex

MAX_SPAN_TOKENS = 32_768       # one span's slots (also a completion's max_tokens); the model's context is often less
MAX_DOCUMENT_CHARS = 1 << 20   # characters of one document: the page's 1 MiB files
MAX_DOCUMENT_TOKENS = 1 << 18  # a document's tokens, context and spans together, whatever the model's context
MAX_STEPS = 1 << 16            # forwards one run may ask for: with remask_below a run takes all of them
MAX_CANDIDATES = 64            # candidates (a completion's n) denoised together: memory grows with each
MAX_TEMPERATURE = 100.0        # past a few, sampling is uniform already
MAX_INSTRUCTION_CHARS = 1_000  # an instruction edit's instruction: a sentence or a short paragraph
MAX_GUIDANCE = 16.0            # classifier-free guidance scale: past a few, the mix is noise
DEFAULT_BUDGET = 2_000_000     # steps x candidates x canvas tokens, the page's and the service's default


class OverLimit(ValueError):
    """A request past one of these limits; the message names the limit and its value."""


def check_document(chars: int) -> None:
    if chars > MAX_DOCUMENT_CHARS:
        raise OverLimit(f"the document has {chars:,} characters; the limit is {MAX_DOCUMENT_CHARS:,}")


def check_span_length(start: int, end: int, length: int | None) -> None:
    if length is not None and length > MAX_SPAN_TOKENS:
        raise OverLimit(f"span {start}:{end} asks for {length:,} tokens; the longest span is "
                        f"{MAX_SPAN_TOKENS:,} tokens")


def check_instruction(chars: int) -> None:
    if chars > MAX_INSTRUCTION_CHARS:
        raise OverLimit(f"instruction: {chars:,} characters; the limit is {MAX_INSTRUCTION_CHARS:,}")


GRAPHEME = regex.compile(r"\X")
GRAPHEME_WINDOW = 256  # code points looked back from an edge to find the cluster it falls in


def inside_grapheme(text: str, at: int) -> tuple[int, int] | None:
    """The [start, end) of the user-perceived character (grapheme cluster: an emoji with its ZWJ
    joins, a letter with its accents) that offset `at` cuts, or None when `at` is a boundary."""
    if at <= 0 or at >= len(text) or (text[at - 1] < "\x80" and text[at] < "\x80" and text[at - 1:at + 1] != "\r\n"):
        return None
    lo = max(0, at - GRAPHEME_WINDOW)
    for match in GRAPHEME.finditer(text, lo, min(len(text), at + GRAPHEME_WINDOW)):
        if match.start() < at < match.end():
            return match.start(), match.end()
        if match.start() >= at:
            break
    return None
