""""auto" length: every trial length denoised at once through the page's engine client, the best one kept.

The trials go to the engine together, so its scheduler packs them into shared forwards rather than
running them one after another; the page draws the trial at the span's own length as it goes (the
first step comes as soon as "keep"'s would), and the chosen trial's own steps become the run: it is
not run again. Each trial's first candidate is scored by the base model's window NLL, normalised by
length (engine.length.length_score), so a shorter span can win.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine import Canvas, Span, build_canvas
from engine.codec import SIDE, window
from engine.length import Scorer, length_score

from .actions import Run
from .state import Page


@dataclass
class Trials:
    """The runs of one "auto" regeneration, one per length, and which one the page draws meanwhile."""

    lengths: list[int]
    runs: list[Run]
    shown: int  # index of the run drawn while they denoise: the span's own length, else the middle one

    @property
    def done(self) -> bool:
        return all(run.last is not None and run.last.done for run in self.runs)


def plan_trials(page: Page, text: str, span: Span, lengths: tuple[int, ...], keep: int,
                new_run: Callable[[Canvas], Run]) -> Trials:
    """`new_run` of each length's canvas (of `span` in the run's text) that can be built (a constraint
    that does not fit, or a span past the model's context, skips that length; ValueError if none
    can be); the one at `keep` tokens is shown while they run."""
    model = page.model
    kept, runs, refusal = [], [], None
    for length in lengths:
        try:
            canvas = build_canvas(model.codec, text, [dataclasses.replace(span, length=length)], model.max_length)
        except ValueError as err:
            refusal = err
            continue
        kept.append(length)
        runs.append(new_run(canvas))
    if not runs:
        raise refusal or ValueError("give at least one length to try")
    shown = kept.index(keep) if keep in kept else len(kept) // 2
    return Trials(kept, runs, shown)


def run_trials(page: Page, trials: Trials) -> Iterator[Run]:
    """Denoise every trial at once, the shown one leading (its first step comes as soon as alone);
    yield the trial run each step came to (recorded in it)."""
    order = [trials.shown] + [i for i in range(len(trials.runs)) if i != trials.shown]
    first = trials.runs[0]  # every trial has the run's settings and language (its correction rounds)
    canvases = [trials.runs[i].canvas for i in order]
    for k, step in page.engine_client.steps_many(canvases, first.settings, first.language):
        run = trials.runs[order[k]]
        run.record(step)
        yield run


def remembered(score: Scorer) -> Scorer:
    """`score`, computing each (document, start, end) once: the ranking of the chosen trial's
    candidates asks again for the window `pick` scored (a causal forward over ~130 tokens each)."""
    seen: dict[tuple[str, int, int], float] = {}

    def once(document: str, start: int, end: int) -> float:
        key = (document, start, end)
        if key not in seen:
            seen[key] = score(document, start, end)
        return seen[key]
    return once


def pick(trials: Trials, score: Scorer) -> tuple[int, list[tuple[int, float]]]:
    """The index of the best finished trial and every (length, score) tried, in length order."""
    codec, tried = trials.runs[0].canvas.codec, []
    for length, run in zip(trials.lengths, trials.runs):
        document = run.result(0)
        start, end = run.new_span(0)
        tokens = len(codec.encode(window(codec, document, start, end, SIDE)))
        tried.append((length, length_score(score(document, start, end), tokens)))
    best = min(range(len(tried)), key=lambda i: tried[i][1])
    return best, tried
