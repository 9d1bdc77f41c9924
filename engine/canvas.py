"""Canvas: a document, the spans to regenerate, and the one mapping between characters and tokens."""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .codec import TextCodec
from .limits import MAX_DOCUMENT_TOKENS, OverLimit, check_span_length, inside_grapheme

MASK_GLYPH = "\u2591"  # how an undecided token reads in a rendered draft


ANCHORS = ("start", "end", "anywhere")


@dataclass(frozen=True)
class Constraint:
    """`text` forced into its span (frozen while denoising). `anchor` "start": it begins `at` tokens
    into the span; "end": it ends `at` tokens before the span's end (0: the span ends with it);
    "anywhere": the model picks the place (engine.pins lays out one row per place)."""

    text: str
    at: int = 0
    anchor: str = "start"


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
class Prompt:
    """An instruction laid out around the canvas (engine/instruct.py): `head` ids go after the
    frame's opening ids and before the document, `tail` ids after the document and before the
    frame's closing ids. The span slots keep their places relative to the document."""

    text: str               # the instruction as given
    head: tuple[int, ...]
    tail: tuple[int, ...]
    layout: str             # "chat template" or "preamble": how it was laid out (docs/MODEL.md)
    bare: tuple[int, ...] = ()  # the head with an empty instruction: guidance's unconditional canvas


@dataclass(frozen=True)
class Canvas:
    """A document laid out as token ids with the span regions marked.

    Span edges are healed: each span's slots stand for its *region*, the span widened to the
    token edges of the whole document's tokenization. So the context the model reads is the
    document's own tokens, and where the tokenizer merges across an edge (" was" after a
    selection that left out its space, " return" after indentation, a cut word) the model writes
    the merged token itself. The region's text outside the span (its head and tail) comes back
    from the original: whitespace as far as the model's text leaves it out (it usually writes it),
    other characters as frozen slots, forced like constraints, so the model reads them. Rendering
    glues the ORIGINAL outside strings around each span's new text: text outside the spans comes
    back byte for byte, whatever the tokenizer's decode would have done to it. A tokenizer whose
    tokens do not spell the text exactly (BERT lowercases) is not healed: its spans are regions.
    """

    text: str
    spans: tuple[Span, ...]
    segments: tuple[str, ...]              # text outside the regions: before region 0, between, after the last
    ids: torch.Tensor                      # (L,) frame + context + span slots (free slots hold 0 until noised)
    span_ranges: tuple[tuple[int, int], ...]  # token [start, end) of each span's region in `ids`
    regions: tuple[tuple[int, int], ...]      # characters [start, end) each span's slots stand for
    fixed: torch.Tensor                    # (L,) bool: inside a span but forced (constraint or edge text)
    codec: TextCodec
    prompt: Prompt | None = None           # an instruction edit's instruction (engine/instruct.py)

    @property
    def length(self) -> int:
        return int(self.ids.shape[-1])  # ids may be (B, L): one row per candidate

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

    def edges(self, index: int) -> tuple[str, str]:
        """The original text between span `index`'s region edges and its own: (head, tail)."""
        (a, b), span = self.regions[index], self.spans[index]
        return self.text[a:span.start], self.text[span.end:b]

    def span_text(self, slots: torch.Tensor, index: int) -> str:
        """The text that replaces span `index`'s characters, given finished P-space `slots` (P,)."""
        return between(self.codec.decode(self.span_ids(slots, index)), *self.edges(index))

    def render(self, slots: torch.Tensor, undecided: torch.Tensor | None = None) -> str:
        """The document with each span decoded from the P-space `slots` (P,); undecided slots read
        as MASK_GLYPH (a draft), so a finished canvas renders to plain text."""
        parts = [self.segments[0]]
        for i, draft in enumerate(self.drafts(slots, undecided)):
            head, tail = self.edges(i)
            parts += [head, draft, tail, self.segments[i + 1]]
        return "".join(parts)

    def drafts(self, slots: torch.Tensor, undecided: torch.Tensor | None = None) -> list[str]:
        """Each span's text as `render` places it (undecided slots as MASK_GLYPH), in document order."""
        out = []
        for i, (a, b) in enumerate(self.slot_ranges):
            drawn = self._decode_draft(slots[a:b], None if undecided is None else undecided[a:b])
            out.append(between(drawn, *self.edges(i)))
        return out

    def placed(self, slots: torch.Tensor, undecided: torch.Tensor | None = None) -> list[tuple[int, int]]:
        """Where each span's new text lies in the document `render` gives, in document order (text
        outside the spans comes back unchanged, so each span shifts by the ones before it)."""
        shift, out = 0, []
        for span, draft in zip(self.spans, self.drafts(slots, undecided)):
            start = span.start + shift
            out.append((start, start + len(draft)))
            shift += len(draft) - (span.end - span.start)
        return out

    def _decode_draft(self, ids: torch.Tensor, undecided: torch.Tensor | None) -> str:
        if undecided is None or not bool(undecided.any()):
            return self.codec.decode(ids.tolist())
        out: list[str] = []
        run: list[int] = []
        for token, hole in zip(ids.tolist(), undecided.tolist()):
            if hole:
                out.append(self.codec.decode(run) + MASK_GLYPH)
                run = []
            else:
                run.append(token)
        out.append(self.codec.decode(run))
        return "".join(out)


def between(drawn: str, head: str, tail: str) -> str:
    """The part of a region's decoded text `drawn` that replaces its span: less as much of the
    original `head` as it starts with and of `tail` as it ends with. The caller puts head and
    tail back from the original, so a space the model wrote is not doubled and one it left out
    is not lost."""
    k = _shared_prefix(drawn, head)
    rest = drawn[k:]
    return rest[:len(rest) - _shared_prefix(rest[::-1], tail[::-1])]


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def build_canvas(codec: TextCodec, text: str, spans: list[Span] | tuple[Span, ...],
                 max_length: int | None = None, heal: bool = True) -> Canvas:
    """Lay `text` out with `spans` to regenerate; raises ValueError with a clear message on bad spans.
    `heal=False` makes every span edge a token edge instead (the layout before healing, kept so
    that it can be measured against)."""
    if not isinstance(text, str):
        raise ValueError("the document must be text (str)")
    if not spans:
        raise ValueError("give at least one span to regenerate")
    ordered = tuple(sorted(spans, key=lambda s: (s.start, s.end)))
    _check_spans(text, ordered)

    doc = DocumentTokens.of(codec, text, heal)
    check_lengths(ordered, len(codec.frame_prefix) + len(doc.ids) + len(codec.frame_suffix), max_length)
    ids: list[int] = list(codec.frame_prefix)
    fixed: list[bool] = [False] * len(ids)
    ranges, regions, segments, cursor = [], [], [], 0
    for i, span in enumerate(ordered):
        ceiling = ordered[i + 1].start if i + 1 < len(ordered) else len(text)
        region = _region(doc, span, cursor, ceiling)
        segments.append(text[cursor:region.start])
        ids += doc.encode(cursor, region.start)
        fixed += [False] * (len(ids) - len(fixed))
        slots, forced = _span_slots(codec, region, span)
        ranges.append((len(ids), len(ids) + len(slots)))
        regions.append((region.start, region.end))
        ids += slots
        fixed += forced
        cursor = region.end
    segments.append(text[cursor:])
    ids += doc.encode(cursor, len(text)) + list(codec.frame_suffix)
    fixed += [False] * (len(ids) - len(fixed))

    if max_length is not None and len(ids) > max_length:
        raise ValueError(f"the document and spans need {len(ids)} tokens; the model's context is {max_length}")
    return Canvas(text=text, spans=ordered, segments=tuple(segments),
                  ids=torch.tensor(ids, dtype=torch.long), span_ranges=tuple(ranges),
                  regions=tuple(regions), fixed=torch.tensor(fixed, dtype=torch.bool), codec=codec)


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
        for at in (span.start, span.end):
            cut = inside_grapheme(text, at)
            if cut is not None:  # half an emoji's ZWJ sequence would decode as U+FFFD or a stray joiner
                raise ValueError(f"span {span.start}:{span.end}: offset {at} falls inside the character "
                                 f"{text[cut[0]:cut[1]]!r} ({cut[0]}:{cut[1]}); move the edge to {cut[0]} or {cut[1]}")
        previous_end = span.end


@dataclass(frozen=True)
class DocumentTokens:
    """The whole document's tokens and the character offsets of their edges (none when the
    tokenizer does not spell the text exactly: then no edge is healed)."""

    codec: TextCodec
    text: str
    ids: list[int]
    index: dict[int, int]   # character offset of a token edge -> how many tokens come before it
    edges: list[int]        # those offsets, sorted

    @classmethod
    def of(cls, codec: TextCodec, text: str, heal: bool = True) -> DocumentTokens:
        ids = codec.encode(text)
        found = codec.char_edges(text, ids) if heal else None
        if found is None or codec.decode(ids) != text:
            found = []
        index = {at: k for k, at in enumerate(found) if at is not None}
        return cls(codec, text, ids, index, sorted(index))

    def around(self, at: int) -> tuple[int, int] | None:
        """The token edges either side of character offset `at` when a token spans it, else None."""
        if not self.index or at in self.index:
            return None
        k = bisect.bisect(self.edges, at)
        return self.edges[k - 1], self.edges[k]

    def encode(self, a: int, b: int) -> list[int]:
        """Tokens for text[a:b]: the document's own where both ends are its token edges."""
        if a in self.index and b in self.index:
            return self.ids[self.index[a]:self.index[b]]
        return self.codec.encode(self.text[a:b])


@dataclass(frozen=True)
class _Region:
    start: int            # characters [start, end) the span's slots stand for
    end: int
    prefix: list[int]     # frozen ids before the free slots (a cut word's first letters)
    suffix: list[int]     # frozen ids after them (a cut word's last letters, or the whole token)
    free: str             # what the free slots hold in the original text


def _region(doc: DocumentTokens, span: Span, floor: int, ceiling: int) -> _Region:
    """Widen `span` to the document's token edges, within [floor, ceiling] (the neighbours' share).

    Left: a head of whitespace (" was", indentation + " return") is left to the model's first
    token, which carries it as the tokenizer would; a head of other characters is frozen.
    Right: a tail of whitespace is left to the model's last token; a word whose leading
    whitespace the span ends in is frozen whole (its natural token: an insertion after a space
    writes before " was"); a cut word's rest is frozen.
    """
    text, codec = doc.text, doc.codec
    start, end, prefix, suffix, frozen_head, frozen_tail = span.start, span.end, [], [], "", ""
    around = doc.around(span.start)
    if around is not None and around[0] >= floor:
        start = around[0]
        head = text[start:span.start]
        if not head.isspace():
            prefix, frozen_head = codec.encode(head), head
    around = doc.around(span.end)
    if around is not None and around[1] <= ceiling:
        word, end = around
        tail, inside = text[span.end:end], text[word:span.end]
        whole = inside.isspace() and word >= start and (word > span.start or span.start == span.end)
        if tail.isspace():
            pass  # the model's last token carries it, as the head above
        elif whole:
            suffix, frozen_tail = doc.encode(word, end), text[word:end]
        else:
            suffix, frozen_tail = codec.encode(tail), tail
    free = text[start + len(frozen_head):end - len(frozen_tail)]
    return _Region(start, end, prefix, suffix, free)


def _span_slots(codec: TextCodec, region: _Region, span: Span) -> tuple[list[int], list[bool]]:
    """The region's token slots: frozen edge text, then the free slots (0 where the sampler
    decides, constraint tokens where forced), then frozen edge text."""
    length = span.length if span.length is not None else max(1, len(codec.encode(region.free)))
    slots, forced = [0] * length, [False] * length
    for c in span.constraints:
        forced_ids = codec.encode(c.text)
        if not forced_ids:
            raise ValueError("a constraint needs some text")
        if c.anchor not in ("start", "end"):
            raise ValueError(f"constraint {c.text!r}: anchor {c.anchor!r} is laid out by engine.pins "
                             "(one row per place)")
        at = c.at if c.anchor == "start" else length - len(forced_ids) - c.at
        if c.at < 0 or at < 0 or at + len(forced_ids) > length:
            raise ValueError(f"constraint {c.text!r} ({len(forced_ids)} tokens, {c.at} from the {c.anchor}) "
                             f"does not fit in a span of {length} tokens")
        if any(forced[at:at + len(forced_ids)]):
            raise ValueError(f"constraint {c.text!r} overlaps another constraint")
        slots[at:at + len(forced_ids)] = forced_ids
        forced[at:at + len(forced_ids)] = [True] * len(forced_ids)
    edge = [True] * len(region.prefix), [True] * len(region.suffix)
    return region.prefix + slots + region.suffix, edge[0] + forced + edge[1]


def check_lengths(spans: Sequence[Span], fixed_tokens: int, max_length: int | None) -> None:
    """Refuse spans whose given lengths cannot fit, before their slots are laid out: a span over
    MAX_SPAN_TOKENS, a document (`fixed_tokens`: its tokens and the frame) over MAX_DOCUMENT_TOKENS,
    or lengths that add up past the model's context (`max_length`). The exact count, context
    included, is checked once the canvas is laid out, when every list is already this small."""
    for span in spans:
        check_span_length(span.start, span.end, span.length)
    asked = sum(span.length for span in spans if span.length is not None)
    if fixed_tokens > MAX_DOCUMENT_TOKENS:
        raise OverLimit(f"the document is {fixed_tokens:,} tokens; the limit is {MAX_DOCUMENT_TOKENS:,}")
    if max_length is not None and asked > max_length:
        raise OverLimit(f"the spans ask for {asked:,} tokens; the model's context is {max_length:,} tokens")
