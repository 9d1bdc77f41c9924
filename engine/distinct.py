"""Distinct candidates: candidates that came out the same as an earlier one are drawn again.

A small model is sure of most tokens of a short phrase, so candidates 2.. sampling at
`candidate_temperature` often land on candidate 1's text. Asking for three and getting one text
three times wastes the person's look. So once a run is done, every candidate whose document repeats
an earlier candidate's is denoised again, from the same canvas, every one of them sampling, with a
new seed and a little warmer: rounds of the one loop (as `resize.py` does), streamed as further steps of the same run.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager

import torch

from .loop import Step
from .settings import SamplerSettings

REDRAWS = 3              # rounds of drawing duplicates again before the run keeps what it has
WARMER = 1.25            # each round samples this much warmer: a model that repeats at 0.7 is too sure there
HOTTEST = 2.0            # ...up to this temperature (candidate_temperature's own upper bound)
SEED_STRIDE = 1_000_003  # a redraw's seed: the run's plus this per round (a prime: no overlap with seed + k)
MAX_SEED = 2**63 - 1     # torch.Generator.manual_seed takes a signed 64-bit int


def repeats(texts: tuple[str, ...]) -> list[int]:
    """Indices of the documents that equal an earlier one in `texts`."""
    return [i for i, text in enumerate(texts) if text in texts[:i]]


def can_differ(settings: SamplerSettings) -> bool:
    """Whether a redraw can come out different: something samples (0 and 0 asks for N argmax copies)."""
    return settings.candidates > 1 and (settings.temperature > 0 or settings.candidate_temperature > 0)


def redraw_settings(settings: SamplerSettings, count: int, round_: int, redraws: int = REDRAWS) -> SamplerSettings:
    """`count` candidates, all sampling (at the run's temperature, else the candidate temperature,
    WARMER per round, at most HOTTEST), with the seed of redraw `round_` (1-based). The last round
    also drops the frontier guide (engine/guide.py): it picks a span's closing token by how the text
    after it reads, whatever the temperature, so a short guided span can only repeat itself."""
    temperature = min(HOTTEST, (settings.temperature or settings.candidate_temperature) * WARMER**round_)
    guide = 0.0 if round_ >= redraws else settings.guide
    return settings.replace(candidates=count, temperature=temperature, guide=guide,
                            seed=(settings.seed + round_ * SEED_STRIDE) % MAX_SEED)


def distinct(draw: Callable[[SamplerSettings], Iterator[Step]], settings: SamplerSettings,
             redraws: int = REDRAWS) -> Iterator[Step]:
    """The steps of `draw(settings)` (a run of the loop: `infill`, the page's engine client), then
    those of `redraw_repeats` after its last step."""
    last: Step | None = None
    with closed(draw(settings)) as steps:
        for last in steps:
            yield last
    if last is not None:
        yield from redraw_repeats(last, draw, settings, redraws)


def redraw_repeats(last: Step, draw: Callable[[SamplerSettings], Iterator[Step]], settings: SamplerSettings,
                   redraws: int = REDRAWS) -> Iterator[Step]:
    """While some finished candidates of `last` repeat an earlier one and rounds are left, the steps
    of drawing those again (`draw` with `redraw_settings`), merged into the run's rows (`merged`). A
    round that ends unfinished ends the run there; candidates still repeated after the last round
    stay (the page lists each text once)."""
    for round_ in range(1, redraws + 1):
        if not last.done or not can_differ(settings) or not (again := repeats(last.texts)):
            return
        base = last
        with closed(draw(redraw_settings(settings, len(again), round_, redraws))) as steps:
            for step in steps:
                last = merged(base, again, step)
                yield last


@contextmanager
def closed(steps: Iterator[Step]) -> Iterator[Iterator[Step]]:
    """`steps`, closed however the caller leaves (closing a run's stream cancels the run)."""
    try:
        yield steps
    finally:
        if isinstance(steps, Generator):
            steps.close()


def merged(base: Step, rows: list[int], step: Step) -> Step:
    """`base` (a finished run's last step) with its candidate `rows` replaced by `step`'s candidates
    (a redraw of those rows on the same canvas), numbered as the steps after `base`."""
    index = torch.tensor(rows)
    after = base.index + 1

    def put(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        out = old.clone()
        out[index] = new
        return out
    texts = list(base.texts)
    for row, text in zip(rows, step.texts):
        texts[row] = text
    born = torch.where(step.committed_at >= 0, step.committed_at + after, step.committed_at)
    return Step(index=after + step.index, positions=base.positions, tokens=put(base.tokens, step.tokens),
                masked=put(base.masked, step.masked), confidence=put(base.confidence, step.confidence),
                committed=put(torch.zeros_like(base.committed), step.committed),
                committed_at=put(base.committed_at, born), guided=put(base.guided, step.guided),
                top_ids=put(base.top_ids, step.top_ids),
                top_probs=put(base.top_probs, step.top_probs), forwards=base.forwards + step.forwards,
                elapsed=base.elapsed + step.elapsed, texts=tuple(texts), round=step.round)
