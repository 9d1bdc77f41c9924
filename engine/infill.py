"""infill: the denoising loop over a Canvas, each step carrying the document text it reads as."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from .canvas import Canvas, Span, build_canvas
from .concepts import steered
from .context import Carry
from .instruct import instructed
from .loop import Step, denoise, run
from .model import DiffusionLM
from .settings import SamplerSettings


def infill(model: DiffusionLM, canvas: Canvas, settings: SamplerSettings,
           bias: torch.Tensor | None = None, deadline: float | None = None,
           carry: Carry | None = None) -> Iterator[Step]:
    """Denoise every span of `canvas`; each yielded step has `texts`, one document per candidate.
    `bias`: added to the logits of the span slots; past `deadline` (time.monotonic()) the next
    step is the last (engine.loop.denoise); `carry` hands the context cache between runs over the
    same window (engine.context.Carry). A canvas with an instruction runs on the instructed
    model (engine.instruct: the instructed canvas, and with guidance the plain one, per forward);
    steered concepts ride in every forward under it (engine.concepts)."""
    if canvas.codec is not model.codec:
        raise ValueError("the canvas was built with another model's tokenizer")
    runs_on = instructed(steered(model, settings), canvas, settings)
    steps = denoise(runs_on, canvas.ids, canvas.span_ranges, canvas.fixed, settings, bias, deadline, carry)
    for step in steps:
        texts = tuple(canvas.render(step.tokens[b], step.masked[b]) for b in range(step.tokens.shape[0]))
        yield dataclasses.replace(step, texts=texts)


def infill_text(model: DiffusionLM, text: str, spans: list[Span] | tuple[Span, ...],
                settings: SamplerSettings = SamplerSettings()) -> str:
    """The final document of the first candidate: the one-call form of `infill`."""
    canvas = build_canvas(model.codec, text, spans, model.max_length)
    return run(infill(model, canvas, settings)).texts[0]
