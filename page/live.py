"""A run's span as the document editor draws it in place (page/document_editor's `live` property).

One step of one candidate: where the span lies in the document the run started from (code points;
the editor converts), and its slots as [text, kind, confidence] pieces. Text from the model travels
as text: the editor sets it as textContent, never as markup.
"""
from __future__ import annotations

from typing import Any

from engine import MASK_GLYPH, Step

from .actions import Run
from .views import EOS_GLYPH, slot_kind, span_pieces


def step_pieces(run: Run, step: Step, b: int) -> list[list[Any]]:
    """The span's slots at `step` for candidate `b`, in order: [text, kind, confidence]."""
    start, end = run.canvas.slot_ranges[0]
    decided = span_pieces(step, run.canvas, b, start, end)
    pieces: list[list[Any]] = []
    for s in range(start, end):
        kind = slot_kind(step, run.canvas, b, s)
        text = MASK_GLYPH if kind == "masked" else EOS_GLYPH if kind.endswith("eos") else decided.get(s, "")
        pieces.append([text, kind.split()[-1], round(float(step.confidence[b, s]), 2)])
    return pieces


def finished_pieces(run: Run, b: int) -> list[list[Any]]:
    """A finished candidate as it would be accepted: its slots, unless they do not spell the candidate's
    new text exactly (edges the codec merges), then that text whole, so what is shown is what Accept writes."""
    assert run.last is not None
    pieces = [p for p in step_pieces(run, run.last, b) if p[1] != "eos"]
    s, e = run.new_span(b)
    new_text = run.result(b)[s:e]
    if "".join(p[0] for p in pieces) == new_text:
        return pieces
    confidence = min((p[2] for p in pieces), default=1.0)
    return [[new_text, "settled", confidence]]


def span_live(run: Run, k: int | None = None, candidate: int | None = None, stopped: bool = False,
              asking: str | None = None) -> dict:
    """The `live` value for step `k` (1-based; None: the last) of candidate `candidate` (None: the best);
    `asking`: the page asks before accepting it (why: it does not parse), Tab confirms, Esc declines."""
    steps = len(run.steps)
    k = steps if k is None else max(1, min(int(k), steps))
    step = run.steps[k - 1]
    b = (run.order[0] if run.order else 0) if candidate is None else int(candidate)
    b = max(0, min(b, step.tokens.shape[0] - 1))
    # Done once the candidates are checked and ranked (runs.finished): then Tab accepts the one shown.
    state = "stopped" if stopped else "done" if run.last is not None and run.last.done and run.order else "denoising"
    final = state == "done" and k == steps
    live = {
        "run": run.number, "state": state, "step": k, "steps": steps,
        "start": run.span[0], "end": run.span[1],
        "pieces": finished_pieces(run, b) if final else step_pieces(run, step, b),
        "candidate": run.order.index(b) if b in run.order else b, "candidates": int(step.tokens.shape[0]),
    }
    return {**live, "asking": asking} if asking else live
