"""Handlers for a regeneration: run it (streaming the engine's real steps), watch it, accept or reject it.

Each takes the `Page` first (bound in demo.py), then the event's inputs in order. A tab's run is
an `actions.Run`, its document a `Doc`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from html import escape
from typing import Any

import gradio as gr

from editor.diffs import rebase_edit
from editor.history import Regeneration, StaleRevision
from editor.text import EditorError
from engine import build_canvas, infill
from engine.length import Scorer, choose_length

from . import views
from .access import AccessError, check_budget, in_turn
from .actions import (
    Problem,
    Run,
    auto_lengths,
    check_candidates,
    length_note,
    make_span,
    move_node,
    page_document,
    rank_candidates,
    syntax_node,
)
from .dial import settings_from_dial
from .document_editor import NO_SPAN, Document
from .documents import ensure_revision, history_outputs
from .errors import REFUSALS, error, fail, log, trim_heap
from .live import span_live
from .state import Doc, Page

ACTIONS = ("selection", "node", "fill")  # what a regenerate button regenerates


def regenerate(page: Page, action: str, document: Document, doc: Doc, language: str, mode: str,
               n: Any, constraint: str, heatmap: bool, *dial: Any) -> Iterator[tuple]:
    """Stream one regeneration: (live view, metrics, run, scrub, candidates, message, the editor's
    span in place) per step."""
    hide = gr.update(visible=False)
    model = page.model
    try:
        text = page_document(document.text)
        a, b = document.start, document.end
        kind = None
        if action == "selection_or_fill":  # the editor's Ctrl/Cmd+Enter: the selection, or fill at the cursor
            action = "selection" if a < b else "fill"
        if action == "selection" and a == b:
            raise EditorError("Select some text in the document first (or use Fill at cursor).")
        if action == "node":
            node = syntax_node(text, language, a, b)
            a, b, kind = node.start, node.end, node.kind
        if action == "fill":
            a = b
            mode = mode if mode == "auto" else "N tokens"
        settings = settings_from_dial(dial)
        span = make_span(model.codec, text, a, b, mode, n, constraint)
        lengths = auto_lengths(model.codec, text[a:b], mode, page.score)
        # "auto": each tried length is one run of at most the longest one's cost; that one is checked.
        widest = dataclasses.replace(span, length=max(lengths)) if lengths else span
        canvas = build_canvas(model.codec, text, [widest], model.max_length)
        check_budget(settings, canvas, page.limits.budget)
    except (ValueError, EditorError) as err:
        raise fail(err) from None
    note = ""
    if lengths:  # pick the length with quick unstreamed runs first, then stream the real run at it
        yield (views.EMPTY_VIEW, "<div class='sh-metrics'>choosing a length: trying "
               f"{', '.join(map(str, lengths))} tokens…</div>",
               None, hide, hide, "", gr.update(live=NO_SPAN))
        try:
            length, tried = choose_length(model, text, span, settings, lengths, page.score)
            span = dataclasses.replace(span, length=length)
            canvas = build_canvas(model.codec, text, [span], model.max_length)
        except ValueError as err:
            raise fail(err) from None
        except Exception as err:
            log.exception("the model failed choosing a length")
            raise error(f"The model failed: {err}", "Model error") from None
        note = length_note(tried, length)
    run = Run(canvas, text, (a, b), language, doc.id, doc.revision, kind, settings)
    yield views.EMPTY_VIEW, "<div class='sh-metrics'>starting…</div>", run, hide, hide, note, gr.update(live=NO_SPAN)
    try:
        for step in infill(model, canvas, settings):
            run.record(step)
            yield (views.step_html(step, canvas, 0, heatmap), views.metrics_html(step, canvas), run,
                   gr.update(), gr.update(), "", gr.update(live=span_live(run)))
    except Exception as err:  # a model failure: say so, the document is untouched
        log.exception("the model failed")
        raise error(f"The model failed: {err}", "Model error") from None
    finally:
        trim_heap()
    yield finished(run, page.score, heatmap, note)


def finished(run: Run, score: Scorer | None, heatmap: bool, note: str) -> tuple:
    """The outputs once a run is done: its candidates checked and ranked, the best one drawn."""
    try:
        run.problems = check_candidates(run)
    except EditorError as err:  # the check is advice: a run is never lost to it
        run.problems = [Problem(False, f"could not check: {err}")] * len(run.last.texts if run.last else ())
    try:
        rank_candidates(run, score)
    except Exception:  # the ranking is advice too: unscored, in the loop's order
        log.exception("scoring the candidates failed")
        rank_candidates(run, None)
    choices = [(candidate_label(run, i), i) for i in run.order]
    last, best = run.last, run.order[0]
    assert last is not None
    return (views.step_html(last, run.canvas, best, heatmap), views.metrics_html(last, run.canvas), run,
            scrub_update(run), gr.update(choices=choices, value=best, visible=True),
            note + "Pick a candidate and press Accept (Tab), or Reject all (Esc). The document is unchanged "
            "until then.", gr.update(live=span_live(run)))


def run_action(page: Page, action: str, request: gr.Request, *inputs: Any) -> Iterator[tuple]:
    """A regenerate button: `regenerate` on the model when its turn comes (Turns: first come first
    served, limits.runs_per_user per login, or per page without one); meanwhile the metrics say how
    many runs are ahead."""
    name = getattr(request, "username", None)
    user = ("login", name) if name else ("page", getattr(request, "session_hash", None))

    def waiting(ahead: int) -> tuple:
        note = f"<div class='sh-metrics' data-state='waiting'>waiting for the model: {ahead} run(s) ahead</div>"
        return gr.update(), note, gr.update(), gr.update(), gr.update(), "", gr.update()
    try:
        yield from in_turn(page.turns, user, regenerate(page, action, *inputs), waiting)
    except AccessError as err:
        raise fail(err) from None


def candidate_label(run: Run, i: int) -> str:
    """One line per candidate: its new text, its score, and what is wrong with it (does not parse, or
    parses as another kind of node)."""
    s, e = run.new_span(i)
    piece = run.result(i)[s:e].replace("\n", "⏎")
    nll = run.scores[i] if i < len(run.scores) else None
    score = f"  · NLL {nll:.2f}" if nll is not None else ""  # the base model's, per token of the window
    problem = run.problems[i]
    mark = "" if problem is None else f"  ≠ {problem}" if problem.parses else f"  ✗ does not parse: {problem}"
    return f"{i + 1}: {piece[:60]}{'…' if len(piece) > 60 else ''}{score}{mark}"


def scrub_update(run: Run) -> dict:
    """The step slider for a recorded run (a slider needs two distinct ends; steps past the last clamp)."""
    return gr.update(minimum=1, maximum=max(2, len(run.steps)), value=len(run.steps), visible=True)


def stopped(run: Run | None) -> tuple:
    """(metrics, scrub, the editor's span): a run stopped before its end stays shown until rejected."""
    if run is None or run.last is None:
        return "<div class='sh-metrics' data-state='stopped'><b>stopped</b> before the first step</div>", \
            gr.update(), gr.update(live=NO_SPAN)
    halted = not run.last.done
    return (views.metrics_html(run.last, run.canvas, stopped=halted), scrub_update(run),
            gr.update(live=span_live(run, stopped=halted)))


def show_step(k: Any, run: Run | None, candidate: Any, heatmap: bool) -> tuple:
    """(live view, metrics, the editor's span) at step `k` of one candidate."""
    if run is None or not run.steps:
        return views.EMPTY_VIEW, "", gr.update()
    k = max(1, min(int(k or 1), len(run.steps)))
    step = run.steps[k - 1]
    return (views.step_html(step, run.canvas, int(candidate or 0), heatmap), views.metrics_html(step, run.canvas),
            gr.update(live=span_live(run, k, int(candidate or 0))))


def next_candidate(run: Run | None, candidate: Any, heatmap: bool) -> tuple:
    """Alt+]: the next candidate in ranked order (wrapping): (candidates, live view, metrics, span)."""
    return _cycle(run, candidate, heatmap, 1)


def previous_candidate(run: Run | None, candidate: Any, heatmap: bool) -> tuple:
    """Alt+[: the previous candidate in ranked order (wrapping)."""
    return _cycle(run, candidate, heatmap, -1)


def _cycle(run: Run | None, candidate: Any, heatmap: bool, by: int) -> tuple:
    if run is None or not run.order:
        return gr.update(), gr.update(), gr.update(), gr.update()
    at = run.order.index(int(candidate)) if candidate is not None and int(candidate) in run.order else 0
    chosen = run.order[(at + by) % len(run.order)]
    return (chosen, *show_step(len(run.steps), run, chosen, heatmap))


def scrub_to(run: Run | None, candidate: Any, heatmap: bool, evt: gr.EventData) -> tuple:
    """The span toolbar's step slider: (scrub slider, live view, metrics, span) at the step it asks for."""
    if run is None or not run.steps:
        return gr.update(), gr.update(), gr.update(), gr.update()
    k = max(1, min(int((getattr(evt, "_data", None) or {}).get("step", len(run.steps))), len(run.steps)))
    return (k, *show_step(k, run, candidate, heatmap))


def inspect_token(run: Run | None, k: Any, candidate: Any, evt: gr.SelectData) -> str:
    if run is None or not run.steps:
        return views.inspector_html(None, None, 0, 0)
    step = run.steps[max(0, min(int(k or len(run.steps)), len(run.steps)) - 1)]
    return views.inspector_html(step, run.canvas, int(candidate or 0), int(evt.index))


# -- accept / reject --------------------------------------------------------------------------------
def accept(page: Page, document: Document, run: Run | None, candidate: Any, doc: Doc, name: str, language: str,
           request: gr.Request) -> tuple:
    """Record the chosen candidate as the document's new head."""
    return _accept(page, document.text, run, candidate, doc, name, language, False, request)


def accept_branch(page: Page, document: Document, run: Run | None, candidate: Any, doc: Doc, name: str, language: str,
                  request: gr.Request) -> tuple:
    """Record the chosen candidate as a branch from the revision the run started on."""
    return _accept(page, document.text, run, candidate, doc, name, language, True, request)


def _accept(page: Page, text: str, run: Run | None, candidate: Any, doc: Doc, name: str, language: str,
            branch: bool, request: gr.Request | None) -> tuple:
    h = page.mine(request)
    if run is None or run.last is None or not run.last.done:
        raise error("Nothing to accept: regenerate first (a stopped run cannot be accepted).")
    i = int(candidate or 0)
    try:
        result = run.result(i)
        if text != run.base_text:  # the person typed meanwhile: carry the edit over, keep their text
            result = rebase_edit(run.base_text, result, text)
        if run.document is not None and run.document != doc.id:
            raise EditorError("This edit was made on another document; regenerate again.")
        base = ensure_revision(h, text, Doc(doc.id, run.base_revision or doc.revision), name, language)
        assert base.id is not None and base.revision is not None
        regen = Regeneration([run.new_span(i)], page.model.label, dataclasses.asdict(run.settings),
                             run.settings.seed, run.last.forwards, run.last.elapsed * 1000)
        rev = h.commit(base.id, result, base.revision, "regenerated", regeneration=regen, branch=branch)
    except StaleRevision as err:
        log.exception("stale accept")
        raise error(f"The document changed since this edit started (revision {err.base_id}; the head is "
                    f"now {err.head_id}). Your text is unchanged. Use 'Accept as branch' to keep both.",
                    "Stale revision") from None
    except REFUSALS as err:
        raise fail(err) from None
    doc = Doc(rev.document_id, rev.id)
    end = min(run.new_span(i)[1], len(result))  # typing meanwhile (rebased) may shift it: then near enough
    shown = gr.update(value=Document(result, end, end), live=NO_SPAN)  # the cursor after the new text
    return (shown, doc, *history_outputs(h, doc), None, gr.update(visible=False), gr.update(visible=False),
            f"Accepted candidate {i + 1} as revision #{rev.id}.")


def reject() -> tuple:
    """(run, live view, candidates, scrub, message, the editor's span): the run is dropped."""
    return None, views.EMPTY_VIEW, gr.update(visible=False), gr.update(visible=False), \
        "Rejected all candidates; the document is unchanged.", gr.update(live=NO_SPAN)


def forget_session(demo: gr.Blocks, request: gr.Request) -> None:
    """A closed tab's run goes now, not an hour later (gradio keeps a closed session's state that
    long in case it reconnects; a reload opens a new session anyway)."""
    if request.session_hash is not None:
        demo.state_holder.delete_state(request.session_hash)
        trim_heap()


# -- selection moves ---------------------------------------------------------------------------------
def move(page: Page, direction: str, document: Document, language: str) -> tuple:
    """Expand or Shrink: (the document with its selection on the next larger or smaller node, message)."""
    text, a, b = document.text, document.start, document.end
    try:
        node = syntax_node(text, language, a, b) if a == b else move_node(text, language, a, b, direction)
    except (ValueError, EditorError) as err:
        raise fail(err) from None
    if node is None:
        raise error(f"Cannot {direction} further.", "Selection")
    return Document(text, node.start, node.end), f"Selected: {escape(node.label)}"
