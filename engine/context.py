"""How each step sees the canvas: the whole of it every forward, or its context cached (DualCache).

The text around a span does not change while the span denoises, so recomputing its keys and
values every step is wasted work (Fast-dLLM, Wu et al. 2025, "DualCache"). A context object owns
that choice; the loop only calls `context.logits(tokens, step, todo, riders)` and gets (B, P, V)
logits for the span slots, and the answers to `riders`: other calls (the frontier guide's causal
read) that share the forward (`DiffusionLM.forward_many`; the Llama family packs them into one
pass). Both variants may also crop the canvas to a window of tokens around the spans.

Only undecided slots are read out (the 49k-row head is a fifth of a cached step's work); the
decided slots' logits come back as zeros, which the loop never reads. cache "delayed" also stops
running committed slots: their keys/values join the context once computed with their token.
A `Carry` hands a run's cache on to the next run over the same window (a correction round).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .commit import Layout
from .model import Call, DiffusionLM, ForwardCall
from .settings import SamplerSettings


class FullContext:
    """Every forward runs over the whole (windowed) canvas: LLaDA's reference, exact."""

    def __init__(self, model: DiffusionLM, positions: torch.Tensor, settings: SamplerSettings):
        self.model = model
        self.window = context_window(positions, settings.context_window)
        self.positions = positions - self.window.start  # (P,) slot indices inside the window

    def logits(self, tokens: torch.Tensor, step: int, todo: torch.Tensor,
               riders: Sequence[Call] = ()) -> tuple[torch.Tensor, list[Any]]:
        """(B, L) canvas, (B, P) undecided slots -> (B, P, V) logits of the undecided span slots
        (zeros elsewhere), and the riders' answers."""
        live = undecided(todo)
        out, read = self.run(ForwardCall(tokens[:, self.window], self.positions[live]), riders)
        return spread(out, live, todo.shape[1]), read

    def run(self, call: ForwardCall, riders: Sequence[Call]) -> tuple[Any, list[Any]]:
        answers = self.model.forward_many([call, *riders])
        return answers[0], answers[1:]


class DualCache(FullContext):
    """Context keys/values computed on refresh steps; in between, forwards run over the slots only.

    Refresh steps: the first, every `refresh_every` steps, and whenever a span moves on to its
    next semi-autoregressive block (the block before it just settled, so its context changed).
    A run handed a `carry` starts from the cache the last run over the same window left there.
    """

    def __init__(self, model: DiffusionLM, layout: Layout, settings: SamplerSettings, carry: Carry | None = None):
        super().__init__(model, layout.positions, settings)
        self.layout, self.refresh_every = layout, settings.refresh_every
        self.freeze = settings.cache == "delayed"
        self.carry = carry
        self.cache: Any = None
        self.front: torch.Tensor | None = None  # (B, S) block each span was working on

    def logits(self, tokens: torch.Tensor, step: int, todo: torch.Tensor,
               riders: Sequence[Call] = ()) -> tuple[torch.Tensor, list[Any]]:
        ids = tokens[:, self.window]
        todo_u = self.layout.gather(todo, False)                               # (B, S, W)
        W = todo_u.shape[-1]
        front = self.layout.block.expand_as(todo_u).masked_fill(~todo_u, W).amin(-1)  # (B, S)
        if self.front is None and self.carry is not None:
            self.cache, self.front = self.carry.take(ids, self.positions), front
        stale = self.refresh_every is not None and step % self.refresh_every == 0
        live = undecided(todo)
        if self.cache is None or self.front is None or stale or not torch.equal(front, self.front):
            self.front = front
            # Without freeze the cache runs every row it is made with, decided slots' too.
            made_with = self.positions[live] if self.freeze else self.positions
            (out, self.cache), read = self.run(ForwardCall(ids, made_with, cached=True, freeze=self.freeze), riders)
            out = out if self.freeze else out[:, live]
        else:
            (out, self.cache), read = self.run(ForwardCall(ids, self.positions[live], cached=True, cache=self.cache),
                                               riders)
        if self.carry is not None:
            self.carry.keep(self.cache, ids)
        return spread(out, live, todo.shape[1]), read


class Carry:
    """A context cache handed from one run to the next over the same window (correction rounds,
    engine.correct): the next run starts from it instead of re-reading the window, provided the
    text outside the span slots is what the cache was made over."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.ids: torch.Tensor | None = None      # (B, L) the window's ids at the cache's last step
        self.positions: torch.Tensor | None = None  # (P,) the span slots in that window

    def keep(self, cache: Any, ids: torch.Tensor) -> None:
        self.cache, self.ids = cache, ids.clone()

    def take(self, ids: torch.Tensor, positions: torch.Tensor) -> Any:
        """The cache, if `ids` (B, L) with slots at `positions` (P,) differ from its window only
        in slots; else None (the run then reads the window afresh)."""
        if self.ids is None or self.ids.shape != ids.shape:
            return None
        outside = torch.ones(ids.shape[1], dtype=torch.bool, device=ids.device)
        outside[positions] = False
        return self.cache if torch.equal(self.ids[:, outside], ids[:, outside]) else None


def undecided(todo: torch.Tensor) -> torch.Tensor:
    """(P',) the slots undecided in any candidate (one host sync: the count sets a shape)."""
    return todo.any(0).nonzero().squeeze(-1)


def spread(out: torch.Tensor, live: torch.Tensor, P: int) -> torch.Tensor:
    """(B, P', V) logits of the `live` (P',) slots -> (B, P, V), zeros at the others."""
    if len(live) == P:
        return out
    full = out.new_zeros(out.shape[0], P, out.shape[2])
    full[:, live] = out
    return full


def make_context(model: DiffusionLM, layout: Layout, settings: SamplerSettings,
                 carry: Carry | None = None) -> FullContext:
    """The context strategy `settings.cache` names; models without cache support run in full.
    `carry`: the cache handed on between runs over the same window (DualCache only)."""
    if caches_context(model, settings):
        return DualCache(model, layout, settings, carry)
    return FullContext(model, layout.positions, settings)


def caches_context(model: DiffusionLM, settings: SamplerSettings) -> bool:
    """Whether a run under `settings` keeps the context's keys/values (DualCache, either form)."""
    return settings.cache in ("dual", "delayed") and model.supports_cache


def context_window(positions: torch.Tensor, width: int | None) -> slice:
    """The canvas slice the model sees: everything, or `width` tokens either side of the spans."""
    if width is None:
        return slice(0, None)
    first, last = int(positions.min()), int(positions.max())
    return slice(max(0, first - width), last + 1 + width)
