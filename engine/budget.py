"""The per-request budget: a run's most forwards x candidates x canvas tokens, checked by arithmetic
on its settings and laid-out canvas before it is queued (the service and the page; engine/limits.py
holds the default)."""
from __future__ import annotations

import math

from .canvas import Canvas
from .limits import OverLimit
from .settings import SamplerSettings


def forwards(settings: SamplerSettings, canvas: Canvas) -> int:
    """Most forwards a run may take, as engine.loop.step_budget counts them."""
    widest = max((end - start for start, end in canvas.span_ranges), default=0)
    return settings.steps or math.ceil(widest / settings.tokens_per_step)


def check_budget(settings: SamplerSettings, canvas: Canvas, budget: int) -> None:
    """Refuse a run whose most forwards x candidates x canvas tokens exceeds `budget`."""
    steps, tokens = forwards(settings, canvas), tokens_per_forward(settings, canvas)
    cost = steps * settings.candidates * tokens
    if cost > budget:
        raise OverLimit(f"This run could take {steps:,} steps × {settings.candidates} candidates × "
                        f"{tokens:,} tokens = {cost:,}; one request may use {budget:,}. Use fewer steps "
                        f"or candidates, a shorter span, or a shorter document.")


def tokens_per_forward(settings: SamplerSettings, canvas: Canvas) -> int:
    """Canvas tokens one forward runs: with an instruction, its layout too, and with guidance the
    unconditional canvas as well (engine/instruct.py)."""
    prompt = canvas.prompt
    if prompt is None:
        return canvas.length
    bare = canvas.length + len(prompt.bare) + len(prompt.tail) if settings.guidance > 0 else 0
    return canvas.length + len(prompt.head) + len(prompt.tail) + bare
