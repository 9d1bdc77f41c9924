"""Commit strategies: which undecided slots to fix this step, vectorised over candidates and spans.

Slots are laid out per span ("unit") as (B, S, W): B candidates, S spans, W = longest span, so
every rule below is a few tensor ops with no Python loop over positions and no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .settings import SamplerSettings

NEVER = float("inf")  # sort key of a slot that must not be taken


@dataclass(frozen=True)
class Layout:
    """Where the span slots are. P-space lists every slot of every span in document order."""

    positions: torch.Tensor  # (P,) canvas index of each slot
    units: torch.Tensor      # (S, W) slot index into P-space per span, -1 pads short spans
    block: torch.Tensor      # (S, W) semi-autoregressive block of each slot within its span
    flat: torch.Tensor       # (P,) index of each slot in the flattened (S * W) units, for scatter

    @classmethod
    def of(cls, span_ranges: tuple[tuple[int, int], ...], block_length: int | None,
           device: torch.device) -> Layout:
        widths = [b - a for a, b in span_ranges]
        W = max(widths)
        units = torch.full((len(span_ranges), W), -1, dtype=torch.long)
        offset = 0
        for s, width in enumerate(widths):
            units[s, :width] = torch.arange(offset, offset + width)
            offset += width
        positions = torch.cat([torch.arange(a, b) for a, b in span_ranges])
        block = torch.arange(W).expand(len(span_ranges), W) // (block_length or W)
        flat = (units >= 0).flatten().nonzero().squeeze(-1)
        return cls(positions.to(device), units.to(device), block.contiguous().to(device), flat.to(device))

    def gather(self, x: torch.Tensor, pad: float | bool = 0) -> torch.Tensor:
        """(B, P) -> (B, S, W), `pad` where a span is shorter than W."""
        out = x[:, self.units.clamp(min=0)]
        return out.masked_fill(self.units < 0, pad)

    def scatter(self, x_u: torch.Tensor) -> torch.Tensor:
        """(B, S, W) -> (B, P): the inverse of gather (units list P-space in order). An integer index,
        not a boolean mask: a mask's result size would need a host sync every call."""
        return x_u.flatten(1)[:, self.flat]


def take_smallest(key_u: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, S, W) keys, (B, S) counts -> (B, S, W) bool marking each unit's n smallest keys."""
    order = key_u.argsort(dim=-1, stable=True)                                 # (B, S, W)
    in_first_n = torch.arange(key_u.shape[-1], device=key_u.device) < n[..., None]
    return torch.zeros_like(in_first_n).scatter(-1, order, in_first_n)


def choose_commits(settings: SamplerSettings, layout: Layout, todo: torch.Tensor,
                   confidence: torch.Tensor, entropy: torch.Tensor, step: int, budget: int,
                   generator: torch.Generator) -> torch.Tensor:
    """(B, P) bool: the slots to commit at 0-based `step` of `budget` forwards.

    Every strategy ranks the undecided slots of a span (earlier blocks always first, then its own
    score) and asks for a count; the step budget asks for its pace (`paced_count`), so the loop
    always ends within `budget` forwards. The larger of the two counts is taken.
    """
    todo_u = layout.gather(todo, False)                                        # (B, S, W)
    conf_u = layout.gather(confidence)
    ent_u = layout.gather(entropy)
    block_u = layout.block.expand_as(todo_u)
    W = todo_u.shape[-1]

    if settings.strategy == "random":
        score_u = torch.rand(todo_u.shape, generator=generator, device=todo_u.device)
    elif settings.strategy == "entropy":
        score_u = -ent_u
    else:  # low_confidence, threshold
        score_u = conf_u
    score_rank = (-score_u.masked_fill(~todo_u, -NEVER)).argsort(dim=-1, stable=True).argsort(-1)
    order_u = block_u * W + score_rank                                         # (B, S, W)
    crowded = crowded_slots(todo_u, order_u, settings.spacing)
    key_u = ((block_u * 2 + crowded) * W + score_rank).float().masked_fill(~todo_u, NEVER)

    remaining = todo_u.sum(-1)                                                 # (B, S)
    current_block = block_u.masked_fill(~todo_u, W).amin(-1, keepdim=True)    # (B, S, 1)
    count = paced_count(layout, todo_u, current_block, step, budget)
    in_block = todo_u & (block_u == current_block) & ~crowded
    if settings.strategy == "threshold":
        count = torch.maximum(count, (in_block & (conf_u >= settings.threshold)).sum(-1))
    elif settings.strategy == "entropy":
        count = torch.maximum(count, entropy_bound_count(ent_u, in_block, settings.entropy_bound))
    return layout.scatter(take_smallest(key_u, count.minimum(remaining)))


def paced_count(layout: Layout, todo_u: torch.Tensor, current_block: torch.Tensor, step: int,
                budget: int) -> torch.Tensor:
    """(B, S) slots each span commits at `step` so that `budget` forwards finish it.

    LLaDA's generate.py gives each semi-autoregressive block an equal share of the steps and
    spreads the block's tokens over its share (the first steps take one more), so a block is
    done before the next begins. Here the current block is due by step
    budget * (span slots in blocks up to it) // span width: LLaDA's shares for equal blocks, the
    whole budget without blocks. A span with more blocks than steps cannot keep them apart and
    spreads all its slots over the steps left. The last step takes whatever is left.
    """
    remaining = todo_u.sum(-1)                                                 # (B, S)
    if budget - step <= 1:
        return remaining
    valid = layout.units >= 0                                                  # (S, W)
    blocks = layout.block.masked_fill(~valid, -1).amax(-1) + 1                 # (S,)
    upto = (valid & (layout.block <= current_block)).sum(-1)                   # (B, S)
    due = budget * upto // valid.sum(-1)                                       # (B, S)
    block_todo = (todo_u & (layout.block == current_block)).sum(-1)            # (B, S)
    paced = blocks <= budget                                                   # (S,)
    todo_now = torch.where(paced, block_todo, remaining)
    steps_left = torch.where(paced, (due - step).clamp(min=1), budget - step)
    return -(-todo_now // steps_left)                                          # ceil division


def crowded_slots(todo_u: torch.Tensor, order_u: torch.Tensor, spacing: int) -> torch.Tensor:
    """(B, S, W) bool: undecided slots with an undecided slot closer than `spacing` that comes
    first in `order_u` (lower is first).

    Slots committed in one forward are each drawn from their own marginal, so two neighbours can
    both take the same likely token ("the the"). A crowded slot is ranked after every free one of
    its block: free slots are never neighbours of each other, and crowded ones are taken only when
    the step budget asks for more commits than there are free slots.
    """
    crowded = torch.zeros_like(todo_u)
    first = order_u.masked_fill(~todo_u, torch.iinfo(order_u.dtype).max)      # decided: never first
    for d in range(1, min(spacing, todo_u.shape[-1])):   # spacing is a small setting, not a size
        left = first[..., :-d] < order_u[..., d:]        # slot i - d comes before slot i
        right = first[..., d:] < order_u[..., :-d]       # slot i + d comes before slot i
        crowded[..., d:] |= left
        crowded[..., :-d] |= right
    return crowded & todo_u


def entropy_bound_count(ent_u: torch.Tensor, eligible: torch.Tensor, bound: float) -> torch.Tensor:
    """EB-sampler (Ben-Hamu et al. 2025): take the lowest-entropy slots while the sum of their
    entropies minus the largest of them stays <= bound. (B, S, W) -> (B, S) counts."""
    ent_sorted = ent_u.masked_fill(~eligible, NEVER).sort(-1).values
    finite = torch.isfinite(ent_sorted)
    summed_before = ent_sorted.masked_fill(~finite, 0).cumsum(-1) - ent_sorted.masked_fill(~finite, 0)
    return (finite & (summed_before <= bound)).sum(-1)


def choose_remasks(layout: Layout, settings: SamplerSettings, decided: torch.Tensor,
                   confidence: torch.Tensor, committed_now: torch.Tensor) -> torch.Tensor:
    """(B, P) bool: earlier commits to send back to undecided (self-correction, off by default).

    The weakest commits below `remask_below` go first, at most as many per span as this step
    committed, so no step goes backwards; the loop never re-masks on its last step, so the step
    budget still ends it (the budget's count grows as steps run out).
    """
    if settings.remask_below is None:
        return torch.zeros_like(decided)
    weak_u = layout.gather(decided & ~committed_now & (confidence < settings.remask_below), False)
    key_u = layout.gather(confidence, NEVER).masked_fill(~weak_u, NEVER)
    n = torch.minimum(layout.gather(committed_now, False).sum(-1), weak_u.sum(-1))
    return layout.scatter(take_smallest(key_u, n))
