"""Span length chosen by the model: infill at a few lengths, keep the one the scorer likes best."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from .canvas import Span, build_canvas
from .infill import infill
from .loop import run
from .model import DiffusionLM
from .resize import ResizingInfill, resizes
from .settings import SamplerSettings

# (document, start, end) -> NLL per token of the window around characters [start, end), lower is
# better: engine.model.Fluency.window_nll.
Scorer = Callable[[str, int, int], float]
STEPS_AROUND = (-2, 0, 2, 4)   # tokens added to the original count (clamped to >= 1)
INSERT_SIZES = (4, 8, 16)      # an empty span (an insertion) has no original count
RESIZE_START = 4               # an insertion's first length where the model resizes (DreamOn's demo)
# How much a longer window is forgiven its extra tokens: GNMT's length penalty (Wu et al. 2016),
# NLL total / ((5 + n) / 6) ** alpha. 1 is the mean per token (it favoured the longest trial 7 times
# in 12 and a shorter one never: predictable filler dilutes the span); 0 is the total (the shortest
# always wins unless it breaks the text after it).
LENGTH_ALPHA = 0.6


def lengths_around(keep: int, resizing: bool = False) -> tuple[int, ...]:
    """The lengths to try for a span of `keep` tokens (0: an insertion), ascending, no repeats.
    `resizing` (a model that grows and shrinks spans itself, DreamOn): one start, the count kept."""
    if resizing:
        return (keep if keep > 0 else RESIZE_START,)
    if keep <= 0:
        return INSERT_SIZES
    return tuple(sorted({max(1, keep + d) for d in STEPS_AROUND}))


def length_score(mean_nll: float, tokens: int, alpha: float = LENGTH_ALPHA) -> float:
    """A window's NLL for comparing trial lengths: its `tokens` tokens' total NLL (`mean_nll` each)
    over GNMT's length penalty, so a shorter span can win when it reads as well (lower is better)."""
    if math.isnan(mean_nll):
        return math.inf
    return mean_nll * tokens / ((5 + tokens) / 6) ** alpha


def choose_length(model: DiffusionLM, text: str, span: Span, settings: SamplerSettings,
                  lengths: Sequence[int], scorer: Scorer) -> tuple[int, list[tuple[int, float]]]:
    """Infill `span` of `text` at each of `lengths` (one candidate, through the one loop) and score
    each result's edited window with `scorer`; return the best length and every (length, score)
    tried, in `lengths` order. Likelihood-ranked length, as in CAL-style calibrated infilling: the
    per-token NLL of the window judges a span that is too short (cramped) or too long (padding);
    a span may still end early with end-of-text, so the longer lengths are upper bounds.
    A model with expand/delete tokens (DreamOn) resizes the span while it denoises
    (engine.resize): each of `lengths` is then where it starts, and the length it ends at is the
    one reported and scored. Lengths whose canvas cannot be built (a constraint that does not fit,
    past the model's context) are skipped; ValueError if none can be."""
    once = settings.replace(candidates=1)
    results: list[tuple[int, float]] = []
    refusal: ValueError | None = None
    for length in lengths:
        try:
            canvas = build_canvas(model.codec, text, [dataclasses.replace(span, length=length)],
                                  model.max_length)
        except ValueError as err:
            refusal = err
            continue
        if resizes(model):
            resizing = ResizingInfill(model, canvas, once)
            document = run(resizing).texts[0]
            length += resizing.growth[0]
        else:
            document = run(infill(model, canvas, once)).texts[0]
        end = len(document) - (len(text) - span.end)  # text after the span comes back unchanged
        score = scorer(document, span.start, end)
        results.append((length, math.inf if math.isnan(score) else score))
    if not results:
        raise refusal or ValueError("give at least one length to try")
    return min(results, key=lambda r: r[1])[0], results
