"""Variable-length infill (DreamOn, Wu et al. 2026): spans that grow and shrink while they denoise.

DreamOn writes two extra tokens at masked slots: expand (the slot becomes two masked slots) and
delete (the slot goes). The denoising loop works on a fixed set of slots, so the span is resized
between rounds of that same loop rather than inside it: a round ends at the step that commits
an expand or a delete, the canvas is rebuilt with the span resized, and what was decided so far
is carried into the next round as forced tokens. The loop itself is not changed. DreamOn's own
sampler commits one slot per forward; here the commit strategy and step budget are the settings'.
Its optional `pad_delete_to_right` (a delete also deletes every undecided slot after it) is not done.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .canvas import Canvas
from .codec import TextCodec
from .guide import CausalView
from .infill import infill
from .loop import Step
from .model import Call, DiffusionLM
from .settings import SamplerSettings

FREE = 0  # what an undecided slot holds in a canvas before the loop fills it with noise


def resizes(model: DiffusionLM) -> bool:
    """True for models with DreamOn's expand and delete tokens."""
    return model.expand_id is not None and model.delete_id is not None


class LengthTokensAllowed(DiffusionLM):
    """`model` seen through another codec: the same forwards, but spans may hold the ids that
    codec does not ban (the length tokens a fixed-length run must never write)."""

    def __init__(self, model: DiffusionLM, codec: TextCodec):
        self.model, self.codec = model, codec
        self.noise, self.mask_id, self.vocab_size = model.noise, model.mask_id, model.vocab_size
        self.max_length, self.device, self.label = model.max_length, model.device, model.label
        self.supports_cache = model.supports_cache

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.logits(ids)

    def logits_at(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.model.logits_at(ids, positions)

    def cached_logits(self, ids: torch.Tensor, positions: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        return self.model.cached_logits(ids, positions, cache)

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        return self.model.forward_many(calls)

    def causal_view(self) -> CausalView | None:
        return self.model.causal_view()


class ResizingInfill:
    """Denoise `canvas` (one candidate) letting the model resize its spans; iterate for the steps.

    1. Run `infill` (the one loop) with expand and delete allowed in the spans.
    2. At the first step that commits either, close the round: an expand slot becomes two
       undecided slots, a delete slot is removed (a span left with no slot keeps one end-of-text),
       and every decided slot is carried into the next round as a forced token.
    3. Run the next round on the resized canvas; stop after a round that ends without either.
       Expand is banned once a span holds `max_slots` slots or the expand budget (twice that per
       span, as DreamOn's default) is spent, so the rounds end.
    `canvas` is the current round's; `growth[i]` is how many slots span i gained (negative: lost).
    """

    def __init__(self, model: DiffusionLM, canvas: Canvas, settings: SamplerSettings,
                 max_slots: int | None = None):
        if not resizes(model):
            raise ValueError(f"{model.label} has no expand/delete tokens: its spans keep their length")
        if settings.candidates != 1:
            raise ValueError("variable-length infill runs one candidate (candidates=1)")
        self.model, self.canvas, self.settings = model, canvas, settings
        widest = max(b - a for a, b in canvas.span_ranges)
        self.max_slots = max_slots or max(2 * widest, widest + 16)
        self.expands_left = 2 * self.max_slots * len(canvas.span_ranges)
        self.growth = [0] * len(canvas.span_ranges)
        self.rounds = self.forwards = 0
        self.length_ids = torch.tensor([model.expand_id, model.delete_id])

    def __iter__(self) -> Iterator[Step]:
        while True:                                                             # 3: round after round
            self.rounds += 1
            view = LengthTokensAllowed(self.model, self.allowed_codec())
            last: Step | None = None
            steps = infill(view, dataclasses.replace(self.canvas, codec=view.codec), self.settings)
            for step in steps:                                                  # 1
                last = dataclasses.replace(step, forwards=self.forwards + step.forwards)
                yield last
                if self.resizing(step):
                    break
            if last is None or not self.resizing(last):
                return
            self.forwards = last.forwards
            self.canvas = self.resized(last)                                    # 2
            if not self.canvas.fixed[self.canvas.slots].logical_not().any():
                return  # only deletes, and nothing left to decide: the last step's text is final

    def allowed_codec(self) -> TextCodec:
        """The model's codec with delete allowed in spans, and expand while there is room."""
        widest = max(b - a for a, b in self.canvas.span_ranges)
        room = (self.expands_left > 0 and widest < self.max_slots
                and self.canvas.length < self.model.max_length)
        allowed = {self.model.delete_id} | ({self.model.expand_id} if room else set())
        codec = self.model.codec
        return dataclasses.replace(codec, banned_ids=tuple(i for i in codec.banned_ids if i not in allowed))

    def resizing(self, step: Step) -> bool:
        """Whether `step`'s decided slots hold an expand or a delete."""
        return bool((~step.masked[0] & torch.isin(step.tokens[0], self.length_ids)).any())

    def resized(self, step: Step) -> Canvas:
        """The canvas with each span's slots rebuilt from `step` (see the class docstring, 2)."""
        c = self.canvas
        ids, fixed = c.ids.tolist(), c.fixed.tolist()
        new_ids: list[int] = []
        new_fixed: list[bool] = []
        ranges, cursor = [], 0
        for i, ((a, b), (pa, pb)) in enumerate(zip(c.span_ranges, c.slot_ranges)):
            new_ids += ids[cursor:a]
            new_fixed += fixed[cursor:a]
            slots, forced = self.resize_span(step.tokens[0, pa:pb].tolist(), (~step.masked[0, pa:pb]).tolist())
            self.growth[i] += len(slots) - (b - a)
            ranges.append((len(new_ids), len(new_ids) + len(slots)))
            new_ids += slots
            new_fixed += forced
            cursor = b
        new_ids += ids[cursor:]
        new_fixed += fixed[cursor:]
        return dataclasses.replace(c, ids=torch.tensor(new_ids, dtype=torch.long), span_ranges=tuple(ranges),
                                   fixed=torch.tensor(new_fixed, dtype=torch.bool))

    def resize_span(self, tokens: list[int], decided: list[bool]) -> tuple[list[int], list[bool]]:
        """One span's slots and which are forced, after its expands and deletes."""
        slots: list[int] = []
        forced: list[bool] = []
        for token, done in zip(tokens, decided):
            if done and token == self.model.expand_id:
                slots += [FREE, FREE]
                forced += [False, False]
                self.expands_left -= 1
            elif not (done and token == self.model.delete_id):
                slots.append(token if done else FREE)
                forced.append(done)
        if not slots:  # everything deleted: the span is empty text
            end = self.model.codec.eos_id
            return ([end], [True]) if end is not None else ([FREE], [False])
        return slots, forced
