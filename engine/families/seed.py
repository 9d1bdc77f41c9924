"""One context for the trials of an "auto" length: the first DualCache forward of canvases that differ
only in how many masked slots their span has is run once, for the first of them; the others start
from its cached context keys and values and run only their own span rows.

Approximate, as DualCache already is between steps: the context's keys and values were computed
beside the lead's masked slots, not the trial's own count. Keys are cached after RoPE; the text
after the span sits `d` positions further on in a trial `d` slots longer, so its keys are turned
by `d` more (RoPE rotations compose: R(p + d) = R(d) R(p)); values carry no position.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..model import Call, ForwardCall
from .llama_net import apply_rope, rope_tables
from .packing import PackedModel
from .rows import Context, SpanCache


def span_of(call: Call, mask_id: int) -> tuple[int, int] | None:
    """(first slot, slots) of a DualCache's first forward over one run of masked slots, else None."""
    if not isinstance(call, ForwardCall) or not call.cached or call.cache is not None:
        return None
    start, P = int(call.positions[0]), len(call.positions)
    if not torch.equal(call.positions, torch.arange(start, start + P, device=call.positions.device)):
        return None
    return (start, P) if bool((call.ids[:, start:start + P] == mask_id).all()) else None


@dataclass(frozen=True)
class Lead:
    """A first forward whose context a trial may start from: its call, span and cache."""

    call: ForwardCall
    span: tuple[int, int]
    cache: SpanCache


class LastLead:
    """The first forward of the pass before (the page starts the trial it shows a step before the
    others), so the others, in the next pass, can start from it; none later, so a run started on its
    own afterwards is not changed by it. One: a context is a whole canvas's keys and values."""

    def __init__(self) -> None:
        self.lead: Lead | None = None


def followers(calls: Sequence[Call], mask_id: int, last: Lead | None) -> dict[int, tuple[Lead | int, int]]:
    """Call index -> (the lead it can start from: `last` or an earlier call's index, how many more
    slots it has): the first forwards whose canvas equals the lead's outside the span, the span at
    the same place."""
    spans = [span_of(call, mask_id) for call in calls]
    leads: list[tuple[Lead | int, ForwardCall, tuple[int, int]]] = []
    if last is not None:
        leads.append((last, last.call, last.span))
    out: dict[int, tuple[Lead | int, int]] = {}
    for i, span in enumerate(spans):
        call = calls[i]
        if span is None or not isinstance(call, ForwardCall):
            continue
        lead = next(((key, other) for key, other_call, other in leads if same_but_span(other_call, other, call, span)),
                    None)
        if lead is None:
            leads.append((i, call, span))
        else:
            out[i] = (lead[0], span[1] - lead[1][1])
    return out


def same_but_span(a: ForwardCall, span_a: tuple[int, int], b: ForwardCall, span_b: tuple[int, int]) -> bool:
    """Whether two canvases hold the same ids before and after their spans, which start at one place."""
    (start, pa), (other, pb) = span_a, span_b
    x, y = a.ids, b.ids
    return (start == other and x.shape[0] == y.shape[0] and x.shape[1] - pa == y.shape[1] - pb
            and torch.equal(x[:, :start], y[:, :start]) and torch.equal(x[:, start + pa:], y[:, start + pb:]))


def seeded(model: PackedModel, lead: SpanCache, call: ForwardCall, more: int) -> SpanCache:
    """The cache `call` (a trial `more` slots longer than the lead, fewer when negative) starts from:
    the lead's context rows, those after the span turned by `more` positions."""
    rows = model.net_input(call.ids).shape[1]
    shape = model.net.shape
    own = model.span_cache(call.positions, [], rows)  # its own active rows (no keys of its own yet)
    before = int(own.active[0])  # context rows before the span: the same rows in both
    cos, sin = rope_tables(torch.full((1, 1), more, device=call.ids.device), shape.head_dim, shape.rope_theta,
                           lead.context.kv[0][0].dtype)                      # (1, 1, 1, D)
    kv = [(torch.cat([k[:, :, :before], apply_rope(k[:, :, before:], cos, sin)], 2), v) for k, v in lead.context.kv]
    return SpanCache(Context(kv), own.active, own.query)


def forward_trials(model: PackedModel, mask_id: int | None, calls: Sequence[Call],
                   run: Callable[[Sequence[Call]], list[Any]], last: LastLead) -> list[Any]:
    """`run(calls)`'s answers, where the followers (`followers`) run as cached steps over their
    lead's seeded context, in a second pass after the first; the last lead of them remembered."""
    later = {} if mask_id is None else followers(calls, mask_id, last.lead)
    last.lead = None  # a lead serves the pass right after its own only: the trials it was started with
    first = [i for i in range(len(calls)) if i not in later]
    answers: list[Any] = [None] * len(calls)
    for i, answer in zip(first, run([calls[i] for i in first])):
        answers[i] = answer
    for i in first:  # remembered: the calls a lead could be, after they ran
        call, span = calls[i], None if mask_id is None else span_of(calls[i], mask_id)
        if span is not None and isinstance(call, ForwardCall):
            last.lead = Lead(call, span, answers[i][1])
    if not later:
        return answers
    then = []
    for i, (lead, more) in later.items():
        call, cache = calls[i], lead.cache if isinstance(lead, Lead) else answers[lead][1]
        assert isinstance(call, ForwardCall)
        then.append(ForwardCall(call.ids, call.positions, True, seeded(model, cache, call, more)))
    for i, answer in zip(later, run(then)):
        answers[i] = answer
    return answers
