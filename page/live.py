"""A run's span as the document editor draws it in place (page/document_editor's `live` property).

One step of one candidate: where the span lies in the document the run started from (code points;
the editor converts), and its slots as [text, kind, confidence, canvas position] pieces. Text from the model travels
as text: the editor sets it as textContent, never as markup.
"""
from __future__ import annotations

from typing import Any

from engine import MASK_GLYPH, Step

from .actions import Run
from .views import EOS_GLYPH, slot_kind, span_pieces


def step_pieces(run: Run, step: Step, b: int) -> list[list[Any]]:
    """The span's slots at `step` for candidate `b`, in order: [text, kind, confidence, canvas position]
    (the position is what the token inspector asks about); an undecided slot with a draft is a
    "draft" piece holding it (views.has_draft). Several spans are drawn as one, the text between
    them as "kept" pieces (never changed, nothing to inspect)."""
    pieces: list[list[Any]] = []
    for i in range(len(run.canvas.slot_ranges)):
        if i:
            pieces.append([run.canvas.segments[i], "kept", 1.0, -1])
        pieces += slot_pieces(run, step, b, i)
    return pieces


def slot_pieces(run: Run, step: Step, b: int, i: int) -> list[list[Any]]:
    """Span `i`'s slots at `step` for candidate `b`, as `step_pieces` lists them."""
    start, end = run.canvas.slot_ranges[i]
    decided = span_pieces(step, run.canvas, b, start, end)
    drafts = span_pieces(step, run.canvas, b, start, end, drafts=True)  # undecided slots' current guesses
    pieces: list[list[Any]] = []
    for s in range(start, end):
        kind = "draft" if s in drafts else slot_kind(step, run.canvas, b, s)
        text = (drafts[s] if kind == "draft" else MASK_GLYPH if kind == "masked" else EOS_GLYPH if kind.endswith("eos")
                else decided.get(s, ""))
        pieces.append([text, kind.split()[-1], round(float(step.confidence[b, s]), 2), int(step.positions[s])])
    return pieces


def finished_pieces(run: Run, b: int) -> list[list[Any]]:
    """A finished candidate as Accept would write it: each span's slots, re-cut to spell its new text,
    the text between spans as it stands in the candidate."""
    assert run.last is not None
    after, places, out = run.result(b), run.new_spans(b), []
    for i, (s, e) in enumerate(places):
        if i:
            out.append([after[places[i - 1][1]:s], "kept", 1.0, -1])
        out += spelled([p for p in slot_pieces(run, run.last, b, i) if p[1] != "eos"], after[s:e])
    return out


def spelled(pieces: list[list[Any]], text: str) -> list[list[Any]]:
    """`pieces` re-cut so that they spell `text`, which may differ from them where the document's text
    was healed at the span's edges: pieces inside the common prefix and suffix stay as they are (and
    can be inspected); those that overlap the difference become one piece of `text`'s own."""
    joined = "".join(p[0] for p in pieces)
    if joined == text:
        return pieces
    n = min(len(joined), len(text))
    head = next((i for i in range(n) if joined[i] != text[i]), n)
    tail = next((i for i in range(n - head) if joined[-1 - i] != text[-1 - i]), n - head)
    before: list[list[Any]] = []
    middle: list[list[Any]] = []
    after: list[list[Any]] = []
    at = 0
    for piece in pieces:
        start, at = at, at + len(piece[0])
        (before if at <= head else after if start >= len(joined) - tail else middle).append(piece)
    first, last = sum(len(p[0]) for p in before), len(text) - sum(len(p[0]) for p in after)
    confidence = min((p[2] for p in middle), default=1.0)
    merged = [[text[first:last], "settled", confidence, middle[0][3] if middle else -1]] if last > first else []
    return before + merged + after


def waiting_live(number: int, start: int, end: int, slots: int) -> dict:
    """A run with no step yet (auto's trials starting, the engine's queue): its span drawn masked, so
    the editor's keys already act on a run (Esc stops it) before the first step arrives."""
    return {"run": number, "state": "denoising", "step": 0, "steps": 0, "start": start, "end": end,
            "pieces": [[MASK_GLYPH, "masked", 0.0, -1]] * max(slots, 1), "candidate": 0, "candidates": 1}


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
