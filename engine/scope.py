"""Scope constraints as token masks: an edit cannot gain the line breaks its selection did not span.

A selection inside one line gets no token that holds a line break; one inside a paragraph (no
blank line in it) no token that holds two. Two single line breaks in a row can still make a blank
line; the correction rounds (engine.correct) catch that through the checker. A span that starts or
ends with a line break, or whose region head or tail holds one (the tokenizer heals its edge over
indentation), may still write one in its first or last slot, where that break belongs.
"""
from __future__ import annotations

import functools
import re

import torch

from .canvas import Canvas
from .codec import TextCodec

BLANK_LINE = re.compile(r"\n[ \t]*\n")


@functools.lru_cache(maxsize=4)
def token_texts(codec: TextCodec, vocab_size: int) -> tuple[str, ...]:
    """Each id's text alone ("" for special ids and padded ids past the tokenizer's)."""
    known = min(vocab_size, len(codec.tokenizer))
    texts = codec.tokenizer.batch_decode([[i] for i in range(known)], skip_special_tokens=True,
                                         clean_up_tokenization_spaces=False)
    return tuple(texts) + ("",) * (vocab_size - known)


@functools.lru_cache(maxsize=4)
def line_breaks(codec: TextCodec, vocab_size: int) -> torch.Tensor:
    """(V,) how many line breaks each id's text holds; one tensor per codec, shared (read it, never
    write to it): counting over the vocabulary took longer than the rest of a run's set-up."""
    return torch.tensor([t.count("\n") for t in token_texts(codec, vocab_size)], dtype=torch.long)


def whole_words(codec: TextCodec) -> frozenset[str]:
    """Lower-case words that are one token after a space (" needed"): real words to a prose
    checker, which has no dictionary of its own."""
    return frozenset(t[1:].lower() for t in token_texts(codec, len(codec.tokenizer))
                     if len(t) > 2 and t[0] == " " and t[1:].isalpha())


def most_breaks(canvas: Canvas, index: int) -> int | None:
    """The most line breaks one token of span `index` may hold: 0 inside a line, 1 inside a
    paragraph, None (any) when the selection already spans a blank line or an insertion sits at
    a line's end."""
    span = canvas.spans[index]
    if span.start == span.end:  # an insertion point: inside a line when text sits on both sides
        left, right = canvas.text[span.start - 1:span.start], canvas.text[span.end:span.end + 1]
        return 0 if left not in ("", "\n") and right not in ("", "\n") else None
    selected = canvas.text[span.start:span.end]
    if "\n" not in selected.strip("\n"):  # a line, perhaps with its own line break at an edge
        return 0
    return 1 if not BLANK_LINE.search(selected) else None


def scope_bias(canvas: Canvas, vocab_size: int) -> torch.Tensor | None:
    """(P, V) 0 where a slot may take a token, -inf where the token would give the span line breaks
    its selection did not have; None when no span is constrained."""
    limits = [most_breaks(canvas, i) for i in range(len(canvas.spans))]
    if all(limit is None for limit in limits):
        return None
    breaks = line_breaks(canvas.codec, vocab_size)                            # (V,)
    rows = []
    for i, ((a, b), limit) in enumerate(zip(canvas.slot_ranges, limits)):
        row = torch.zeros(vocab_size) if limit is None else torch.where(breaks > limit, float("-inf"), 0.0)
        block = row.expand(b - a, -1).clone()                                 # (slots, V)
        head, tail = canvas.edges(i)
        span = canvas.text[canvas.spans[i].start:canvas.spans[i].end]
        if "\n" in head or span.startswith("\n"):
            block[0] = 0
        if "\n" in tail or span.endswith("\n"):
            block[-1] = 0
        rows.append(block)
    return torch.cat(rows)                                                    # (P, V)
