"""Canvas: a document, the spans to regenerate, and the one mapping between characters and tokens."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .codec import TextCodec

MASK_GLYPH = "\u2591"  # how an undecided token reads in a rendered draft


@dataclass(frozen=True)
class Constraint:
    """`text` must appear starting `at` tokens into its span (forced tokens, frozen while denoising)."""

    text: str
    at: int = 0


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of the document to regenerate, as `length` tokens.

    Offsets count Python characters (code points) in the text the user sees. `length` None keeps
    the span's current token count; an empty span (an insertion point) needs a length.
    """

    start: int
    end: int
    length: int | None = None
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True)
class Canvas:
    """A document laid out as token ids with the span regions marked.

    Outside text is tokenized piece by piece between spans, so every span edge is a token edge
    (a span that cuts a word still starts a fresh token), and rendering glues the ORIGINAL outside
    strings around the decoded spans: text outside the spans comes back byte for byte, whatever
    the tokenizer's decode would have done to it.
    """

    text: str
    spans: tuple[Span, ...]
    segments: tuple[str, ...]              # outside text: before span 0, between spans, after the last
    ids: torch.Tensor                      # (L,) frame + context + span slots (slots hold 0 until noised)
    span_ranges: tuple[tuple[int, int], ...]  # token [start, end) of each span in `ids`
    fixed: torch.Tensor                    # (L,) bool: inside a span but forced by a constraint
    codec: TextCodec

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])

    @property
    def slots(self) -> torch.Tensor:
        """(P,) the canvas index of every span slot, in document order (a Step's `positions`)."""
        return torch.cat([torch.arange(a, b) for a, b in self.span_ranges])

    @property
    def slot_ranges(self) -> tuple[tuple[int, int], ...]:
        """Each span's [start, end) in P-space: every span slot in document order, as a Step holds them."""
        out, offset = [], 0
        for a, b in self.span_ranges:
            out.append((offset, offset + b - a))
            offset += b - a
        return tuple(out)

    def span_ids(self, slots: torch.Tensor, index: int) -> list[int]:
        """The ids of span `index` from P-space `slots` (P,)."""
        a, b = self.slot_ranges[index]
        return slots[a:b].tolist()

    def render(self, slots: torch.Tensor, undecided: torch.Tensor | None = None) -> str:
        """The document with each span decoded from the P-space `slots` (P,); undecided slots read
        as MASK_GLYPH (a draft), so a finished canvas renders to plain text."""
        parts = [self.segments[0]]
        for i, (a, b) in enumerate(self.slot_ranges):
            parts.append(self._decode_draft(slots[a:b], None if undecided is None else undecided[a:b]))
            parts.append(self.segments[i + 1])
        return "".join(parts)

    def _decode_draft(self, ids: torch.Tensor, undecided: torch.Tensor | None) -> str:
        if undecided is None or not bool(undecided.any()):
            return self.codec.decode(ids.tolist())
        out, run = [], []
        for token, hole in zip(ids.tolist(), undecided.tolist()):
            if hole:
                out.append(self.codec.decode(run) + MASK_GLYPH)
                run = []
            else:
                run.append(token)
        out.append(self.codec.decode(run))
        return "".join(out)


def build_canvas(codec: TextCodec, text: str, spans: list[Span] | tuple[Span, ...],
                 max_length: int | None = None) -> Canvas:
    """Lay `text` out with `spans` to regenerate; raises ValueError with a clear message on bad spans."""
    if not isinstance(text, str):
        raise ValueError("the document must be text (str)")
    if not spans:
        raise ValueError("give at least one span to regenerate")
    ordered = tuple(sorted(spans, key=lambda s: (s.start, s.end)))
    _check_spans(text, ordered)

    ids: list[int] = list(codec.frame_prefix)
    fixed: list[bool] = [False] * len(ids)
    ranges, segments, cursor = [], [], 0
    for span in ordered:
        segments.append(text[cursor:span.start])
        ids += codec.encode(text[cursor:span.start])
        fixed += [False] * (len(ids) - len(fixed))
        slots, forced = _span_slots(codec, text[span.start:span.end], span)
        ranges.append((len(ids), len(ids) + len(slots)))
        ids += slots
        fixed += forced
        cursor = span.end
    segments.append(text[cursor:])
    ids += codec.encode(text[cursor:]) + list(codec.frame_suffix)
    fixed += [False] * (len(ids) - len(fixed))

    if max_length is not None and len(ids) > max_length:
        raise ValueError(f"the document and spans need {len(ids)} tokens; the model's context is {max_length}")
    return Canvas(text=text, spans=ordered, segments=tuple(segments),
                  ids=torch.tensor(ids, dtype=torch.long), span_ranges=tuple(ranges),
                  fixed=torch.tensor(fixed, dtype=torch.bool), codec=codec)


def _check_spans(text: str, spans: tuple[Span, ...]) -> None:
    previous_end = 0
    for span in spans:
        if not (isinstance(span.start, int) and isinstance(span.end, int)):
            raise ValueError(f"span offsets must be whole numbers, got {span.start!r}:{span.end!r}")
        if not 0 <= span.start <= span.end <= len(text):
            raise ValueError(f"span {span.start}:{span.end} is outside the document (0:{len(text)})")
        if span.start < previous_end:
            raise ValueError(f"span {span.start}:{span.end} overlaps the span before it")
        if span.length is not None and (not isinstance(span.length, int) or span.length < 1):
            raise ValueError(f"span {span.start}:{span.end}: length must be a whole number >= 1")
        if span.start == span.end and span.length is None:
            raise ValueError(f"span {span.start}:{span.end} is empty: give a length in tokens to insert")
        previous_end = span.end


def _span_slots(codec: TextCodec, original: str, span: Span) -> tuple[list[int], list[bool]]:
    """The span's token slots: 0 where the sampler decides, constraint tokens where forced."""
    length = span.length if span.length is not None else max(1, len(codec.encode(original)))
    slots, forced = [0] * length, [False] * length
    for c in span.constraints:
        forced_ids = codec.encode(c.text)
        if not forced_ids:
            raise ValueError("a constraint needs some text")
        if c.at < 0 or c.at + len(forced_ids) > length:
            raise ValueError(f"constraint {c.text!r} ({len(forced_ids)} tokens at {c.at}) "
                             f"does not fit in a span of {length} tokens")
        if any(forced[c.at:c.at + len(forced_ids)]):
            raise ValueError(f"constraint {c.text!r} overlaps another constraint")
        slots[c.at:c.at + len(forced_ids)] = forced_ids
        forced[c.at:c.at + len(forced_ids)] = [True] * len(forced_ids)
    return slots, forced
