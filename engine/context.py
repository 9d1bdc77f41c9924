"""How each step sees the canvas: the whole of it every forward, or its context cached (DualCache).

The text around a span does not change while the span denoises, so recomputing its keys and
values every step is wasted work (Fast-dLLM, Wu et al. 2025, "DualCache"). A context object owns
that choice; the loop only calls `context.logits(tokens, step, todo, riders)` and gets (B, P, V)
logits for the span slots, and the answers to `riders`: other calls (the frontier guide's causal
read) that share the forward (`DiffusionLM.forward_many`; the Llama family packs them into one
pass). Both variants may also crop the canvas to a window of tokens around the spans.
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
        """(B, L) canvas, (B, P) undecided slots -> (B, P, V) logits of the span slots, and the
        riders' answers."""
        return self.run(ForwardCall(tokens[:, self.window], self.positions), riders)

    def run(self, call: ForwardCall, riders: Sequence[Call]) -> tuple[Any, list[Any]]:
        answers = self.model.forward_many([call, *riders])
        return answers[0], answers[1:]


class DualCache(FullContext):
    """Context keys/values computed on refresh steps; in between, forwards run over the slots only.

    Refresh steps: the first, every `refresh_every` steps, and whenever a span moves on to its
    next semi-autoregressive block (the block before it just settled, so its context changed).
    """

    def __init__(self, model: DiffusionLM, layout: Layout, settings: SamplerSettings):
        super().__init__(model, layout.positions, settings)
        self.layout, self.refresh_every = layout, settings.refresh_every
        self.cache: Any = None
        self.front: torch.Tensor | None = None  # (B, S) block each span was working on

    def logits(self, tokens: torch.Tensor, step: int, todo: torch.Tensor,
               riders: Sequence[Call] = ()) -> tuple[torch.Tensor, list[Any]]:
        ids = tokens[:, self.window]
        todo_u = self.layout.gather(todo, False)                               # (B, S, W)
        W = todo_u.shape[-1]
        front = self.layout.block.expand_as(todo_u).masked_fill(~todo_u, W).amin(-1)  # (B, S)
        stale = self.refresh_every is not None and step % self.refresh_every == 0
        if self.cache is None or self.front is None or stale or not torch.equal(front, self.front):
            self.front = front
            (out, self.cache), read = self.run(ForwardCall(ids, self.positions, cached=True), riders)
            return out, read
        (out, _), read = self.run(ForwardCall(ids, self.positions, cached=True, cache=self.cache), riders)
        return out, read


def make_context(model: DiffusionLM, layout: Layout, settings: SamplerSettings) -> FullContext:
    """The context strategy `settings.cache` names; models without cache support run in full."""
    if settings.cache == "dual" and model.supports_cache:
        return DualCache(model, layout, settings)
    return FullContext(model, layout.positions, settings)


def context_window(positions: torch.Tensor, width: int | None) -> slice:
    """The canvas slice the model sees: everything, or `width` tokens either side of the spans."""
    if width is None:
        return slice(0, None)
    first, last = int(positions.min()), int(positions.max())
    return slice(max(0, first - width), last + 1 + width)
