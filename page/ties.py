"""Several selections of the same text (a rename: Ctrl/Cmd+D over one identifier) get the same fill.

Each span of a run denoises from its own slots, so the occurrences of one name came back as several
names. The page ties them: the first occurrence is denoised, and each later occurrence of the same
text shows and returns the first one's slots (tokens, what is still undecided, confidences), step
by step, so the run's view, its candidates, the checks and the accepted revision agree.
"""
from __future__ import annotations

import dataclasses

import torch

from engine import Canvas, Step


def tie_index(canvas: Canvas) -> torch.Tensor | None:
    """(P,) for each span slot, the slot whose token it shows: its own, or the same slot of the first
    span whose region holds the same text (same token count, same edges); None when no two spans tie."""
    ranges, index, first = canvas.slot_ranges, torch.arange(int(canvas.slots.shape[0])), {}
    tied = False
    for i, ((a, b), region) in enumerate(zip(ranges, canvas.regions)):
        key = (canvas.text[region[0]:region[1]], canvas.edges(i), b - a)
        if key in first:
            lead = ranges[first[key]][0]
            index[a:b] = torch.arange(lead, lead + b - a)
            tied = True
        else:
            first[key] = i
    return index if tied else None


def tied(step: Step, canvas: Canvas, index: torch.Tensor | None) -> Step:
    """`step` with every tied slot showing its leading slot's state, the documents drawn again."""
    if index is None:
        return step
    fields = ("tokens", "masked", "confidence", "committed", "committed_at", "guided", "top_ids", "top_probs")
    moved = {name: getattr(step, name)[:, index] for name in fields}
    texts = tuple(canvas.render(moved["tokens"][b], moved["masked"][b]) for b in range(step.tokens.shape[0]))
    return dataclasses.replace(step, texts=texts if step.texts else (), **moved)
