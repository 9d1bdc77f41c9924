"""Pinned words the model places: a "must include" constraint tried at every place in one batch.

A constraint with anchor "anywhere" cannot be laid out in one canvas. Each place it fits at in its
span becomes one row of a (B, L) canvas (the loop takes per-row ids and forced flags, as the
correction rounds use them), so every place is denoised in the same forwards; the rows are then
ranked by how likely the model found its own commits there (the sum of log probabilities at commit
time, the loop's `confidence`), and the most likely place comes first.
"""
from __future__ import annotations

import dataclasses

import torch

from .canvas import Canvas, Constraint, Span, build_canvas
from .codec import TextCodec
from .limits import MAX_CANDIDATES
from .loop import Step
from .settings import SamplerSettings


def lay_out(codec: TextCodec, text: str, spans: list[Span], settings: SamplerSettings,
            max_length: int | None = None) -> tuple[Canvas, SamplerSettings]:
    """`build_canvas`, except that a span with an "anywhere" constraint gives one row per place it
    fits at: the canvas's ids and forced flags are then (places, L) and the settings ask for that
    many candidates, each decoded as candidate 1 is (argmax at temperature 0). One such constraint
    per edit: places multiply."""
    loose = [(i, c) for i, s in enumerate(spans) for c in s.constraints if c.anchor == "anywhere"]
    if not loose:
        return build_canvas(codec, text, spans, max_length), settings
    if len(loose) > 1:
        raise ValueError('"include": one word or phrase per edit (each further one multiplies the places to try)')
    index, pin = loose[0]
    rows = placements(codec, text, spans, index, pin, max_length)
    ids = torch.stack([c.ids for c in rows])                      # (B, L)
    fixed = torch.stack([c.fixed for c in rows])                  # (B, L)
    temperature = settings.temperature if settings.temperature > 0 else 0.0
    # The spans as asked (the pin "anywhere"), so the canvas can be laid out again elsewhere (the service).
    asked = tuple(sorted(spans, key=lambda s: (s.start, s.end)))
    return (dataclasses.replace(rows[0], ids=ids, fixed=fixed, spans=asked),
            settings.replace(candidates=len(rows), candidate_temperature=temperature))


def placements(codec: TextCodec, text: str, spans: list[Span], index: int, pin: Constraint,
               max_length: int | None) -> list[Canvas]:
    """One canvas per token offset at which `pin` fits in span `index` beside its other constraints."""
    n = len(codec.encode(pin.text))
    if n == 0:
        raise ValueError('"include" needs some text')
    plain = build_canvas(codec, text, placed(spans, index, pin, None), max_length)
    a, b = plain.span_ranges[_sorted_index(spans, index)]
    pinned = sum(len(codec.encode(c.text)) for c in spans[index].constraints if c is not pin)
    length = (b - a) - (int(plain.fixed[a:b].sum()) - pinned)   # the span's own slots, edge text left out
    if length - n + 1 > MAX_CANDIDATES:
        raise ValueError(f'"include" {pin.text!r} has {length - n + 1} places in its span; at most {MAX_CANDIDATES} '
                         "are tried at once: select a shorter span or give the place (a constraint at K)")
    rows = []
    for at in range(length - n + 1):
        try:
            rows.append(build_canvas(codec, text, placed(spans, index, pin, at), max_length))
        except ValueError:  # overlaps another constraint there
            continue
    if not rows:
        raise ValueError(f'"include" {pin.text!r} ({n} tokens) does not fit in a span of {length} tokens')
    return rows


def placed(spans: list[Span], index: int, pin: Constraint, at: int | None) -> list[Span]:
    """`spans` with `pin` put at token `at` of span `index` (None: left out)."""
    others = tuple(c for c in spans[index].constraints if c is not pin)
    if at is not None:
        others += (Constraint(pin.text, at),)
    return [dataclasses.replace(s, constraints=others) if i == index else s for i, s in enumerate(spans)]


def _sorted_index(spans: list[Span], index: int) -> int:
    """Where span `index` of the caller's list sits in the canvas (which orders spans by offset)."""
    return sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end)).index(index)


def likelihood(step: Step) -> torch.Tensor:
    """(B,) each row's sum of log probabilities of the tokens it committed (forced slots count 0)."""
    return step.confidence.clamp_min(1e-12).log().where(step.committed_at.ge(0), 0.0).sum(-1)


def best_first(step: Step, keep: int | None = None) -> Step:
    """`step` with its rows (and documents) ordered most likely first, the first `keep` of them."""
    order = likelihood(step).argsort(descending=True, stable=True)[:keep]
    rows = {f.name: getattr(step, f.name)[order] for f in dataclasses.fields(step)
            if isinstance(getattr(step, f.name), torch.Tensor) and f.name != "positions"}
    return dataclasses.replace(step, **rows, texts=tuple(step.texts[i] for i in order.tolist()))
