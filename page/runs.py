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
from editor.history import History, Regeneration, Revision, StaleRevision
from editor.text import EditorError
from engine import build_canvas
from engine.guide import causal_view_for
from engine.length import Scorer, choose_length
from engine.resize import resizes

from . import views
from .access import AccessError, in_turn
from .actions import (
    Problem,
    Run,
    check_candidates,
    length_note,
    move_node,
    plan_run,
    rank_candidates,
)
from .dial import settings_from_dial
from .document_editor import NO_SPAN, Document
from .documents import ensure_revision
from .engine_client import RemoteModel
from .errors import REFUSALS, error, fail, log, trim_heap
from .live import span_live
from .outputs import (
    KEEP,
    cleared_run,
    controls,
    document_outputs,
    hidden_confirmation,
    run_outputs,
    unchanged,
)
from .state import Doc, Moves, Page

NO_RUN_SPAN = gr.update(live=NO_SPAN)  # the editor's update that takes a run's span away


def regenerate(page: Page, action: str, document: Document, doc: Doc, language: str, mode: str,
               n: Any, constraint: str, heatmap: bool, *dial: Any) -> Iterator[tuple]:
    """Stream one regeneration: the run panel (outputs.run_outputs), a message and the editor's span
    in place (page/live.py), per step."""
    model = page.model
    try:
        req = plan_run(page, action, document.text, document.start, document.end, language, mode, n, constraint,
                       settings_from_dial(dial))
        if not isinstance(model, RemoteModel):  # a served model's guide is the service's to refuse
            causal_view_for(model, req.settings)
    except (ValueError, EditorError) as err:
        raise fail(err) from None
    hide, inspector = gr.update(visible=False), views.inspector_html(None, None, 0, 0)
    span, note = req.span, ""
    if req.lengths and page.score is not None:  # "auto": quick unstreamed runs pick the length first
        trying = f"<div class='sh-metrics'>choosing a length: trying {', '.join(map(str, req.lengths))} tokens…</div>"
        yield *run_outputs(views.EMPTY_VIEW, trying, None, hide, hide, inspector, "running"), "", NO_RUN_SPAN
        try:
            length, tried = choose_length(model, req.text, span, req.settings, req.lengths, page.score)
        except ValueError as err:
            raise fail(err) from None
        except Exception as err:
            log.exception("the model failed choosing a length")
            raise error(f"The model failed: {err}", "Model error") from None
        span, note = dataclasses.replace(span, length=length), length_note(tried, length, resizes(model))
    canvas = build_canvas(model.codec, req.text, [span], model.max_length)
    settings = req.settings
    run = Run(canvas, req.text, (req.start, req.end), language, doc.id, doc.revision, req.kind, settings)
    starting = "<div class='sh-metrics'>starting…</div>"
    yield *run_outputs(views.EMPTY_VIEW, starting, run, hide, hide, inspector, "running"), note, NO_RUN_SPAN
    try:
        for step in page.engine.steps(canvas, settings):
            if run.stopped:
                return
            run.record(step)
            yield (*run_outputs(views.step_html(step, canvas, 0, heatmap),
                                views.metrics_html(step, canvas, checked=False), run,
                                KEEP, KEEP, KEEP, None), KEEP, gr.update(live=span_live(run)))
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
    return (*run_outputs(views.step_html(last, run.canvas, best, heatmap), views.metrics_html(last, run.canvas), run,
                         scrub_update(run), gr.update(choices=choices, value=best, visible=True), KEEP, "done"),
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
        return *run_outputs(KEEP, note, KEEP, KEEP, KEEP, KEEP, None), KEEP, KEEP
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
    mark = "" if problem is None else f"  ≠ {problem}" if problem.parses else f"  ✗ {problem}"
    return f"{i + 1}: {piece[:60]}{'…' if len(piece) > 60 else ''}{score}{mark}"


def scrub_update(run: Run) -> dict:
    """The step slider for a recorded run (a slider needs two distinct ends; steps past the last clamp)."""
    return gr.update(minimum=1, maximum=max(2, len(run.steps)), value=len(run.steps), visible=True)


def stopped(run: Run | None) -> tuple:
    """Stop pressed: the metrics say where the run stopped; a stopped run can be rejected, not accepted.
    Outputs: metrics, scrubber, the run's buttons, the editor's span."""
    if run is not None:
        run.stopped = True
    if run is None or run.last is None:
        return ("<div class='sh-metrics' data-state='stopped'><b>stopped</b> before the first step</div>", KEEP,
                *controls("stopped"), NO_RUN_SPAN)
    done = run.last.done  # Stop can arrive just after the last step
    return (views.metrics_html(run.last, run.canvas, stopped=not done), scrub_update(run),
            *controls("done" if done else "stopped"), gr.update(live=span_live(run, stopped=not done)))


def stopped_metrics(run: Run | None) -> str:
    """The metrics of a stopped run, drawn once more after Stop's outputs (see demo.py)."""
    return stopped(run)[0]


def show_step(k: Any, run: Run | None, candidate: Any, heatmap: bool) -> tuple:
    """(live view, metrics, the editor's span) at step `k` of one candidate."""
    if run is None or not run.steps:
        return views.EMPTY_VIEW, "", KEEP
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
        return KEEP, KEEP, KEEP, KEEP
    at = run.order.index(int(candidate)) if candidate is not None and int(candidate) in run.order else 0
    chosen = run.order[(at + by) % len(run.order)]
    return (chosen, *show_step(len(run.steps), run, chosen, heatmap))


def scrub_to(run: Run | None, candidate: Any, heatmap: bool, evt: gr.EventData) -> tuple:
    """The span toolbar's step slider: (scrubber, live view, metrics, span) at the step it asks for."""
    if run is None or not run.steps:
        return KEEP, KEEP, KEEP, KEEP
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
    """Record the chosen candidate as the document's new head (asking first if it does not parse)."""
    return _accept(page, document.text, run, candidate, doc, name, language, "accept", False, request)


def accept_branch(page: Page, document: Document, run: Run | None, candidate: Any, doc: Doc, name: str,
                  language: str, request: gr.Request) -> tuple:
    """Record the chosen candidate as a branch off the revision the run started on."""
    return _accept(page, document.text, run, candidate, doc, name, language, "branch", False, request)


def accept_anyway(page: Page, pending: str | None, document: Document, run: Run | None, candidate: Any, doc: Doc,
                  name: str, language: str, request: gr.Request) -> tuple:
    """The person confirmed accepting a candidate that does not parse."""
    if pending not in ("accept", "branch"):
        raise error("Nothing is waiting to be accepted.")
    return _accept(page, document.text, run, candidate, doc, name, language, pending, True, request)


def cancel_accept(run: Run | None = None, candidate: Any = None) -> tuple:
    """The confirmation row hidden, a message, the editor's span as before the question."""
    span = gr.update(live=span_live(run, candidate=int(candidate or 0))) if run is not None and run.steps else KEEP
    return *hidden_confirmation(), "Not accepted; the candidates are still here.", span


def _accept(page: Page, text: str, run: Run | None, candidate: Any, doc: Doc, name: str, language: str,
            how: str, confirmed: bool, request: gr.Request | None) -> tuple:
    """Outputs: the document panel, the run panel, the message, then the confirmation row, its text
    and the pending accept ("accept" | "branch" | None)."""
    if run is None or run.last is None or not run.last.done:
        raise error("Nothing to accept: regenerate first (a stopped run cannot be accepted).")
    i = int(candidate or 0)
    problem = run.problems[i] if i < len(run.problems) else None
    h = page.mine(request)
    if problem is not None and not problem.parses and not confirmed:
        # The editor shows the question beside the span (accepting itself needs no canvas: without one, no span).
        asking = (gr.update(live=span_live(run, candidate=i, asking=str(problem)))
                  if run.canvas is not None else KEEP)
        keep = (asking, *unchanged(document_outputs(h, doc, name, language)), *unchanged(cleared_run()))
        ask = f"**Candidate {i + 1} does not parse** ({escape(problem.detail or str(problem))}). Accept it anyway?"
        return *keep, "", gr.update(visible=True), ask, how
    try:
        rev, result = _commit(page, h, text, run, i, doc, name, language, how == "branch")
    except StaleRevision as err:
        log.info("stale accept: %s", err)
        raise error(f"The document has a newer revision than the one this edit started from (revision "
                    f"{h.number(err.head_id or err.base_id)}, saved meanwhile). Your text is unchanged: "
                    "'Accept as branch' keeps both.", "Stale revision") from None
    except REFUSALS as err:
        raise fail(err) from None
    end = min(run.new_span(i)[1], len(result))  # the cursor after the new text (typing since may shift it)
    editor = gr.update(value=Document(result, end, end), live=NO_SPAN)
    shown = (editor, *document_outputs(h, Doc(rev.document_id, rev.id), name, language))
    kept = " (a branch)" if how == "branch" else ""
    return (*shown, *cleared_run(), f"Accepted candidate {i + 1} as revision {h.number(rev.id)}{kept}.",
            *hidden_confirmation())


def _commit(page: Page, h: History, text: str, run: Run, i: int, doc: Doc, name: str, language: str,
            branch: bool) -> tuple[Revision, str]:
    """Candidate `i` recorded on the revision the run started from; typing since is carried over."""
    result = run.result(i)
    if text != run.base_text:  # the person typed meanwhile: carry the edit over, keep their text
        result = rebase_edit(run.base_text, result, text)
    if run.document is not None and run.document != doc.id:
        raise EditorError("This edit was made on another document; regenerate again.")
    base = ensure_revision(h, text, Doc(doc.id, run.base_revision or doc.revision), name, language)
    assert base.id is not None and base.revision is not None and run.last is not None
    regen = Regeneration([run.new_span(i)], page.model.label, dataclasses.asdict(run.settings),
                         run.settings.seed, run.last.forwards, run.last.elapsed * 1000)
    return h.commit(base.id, result, base.revision, "regenerated", regeneration=regen, branch=branch), result


def reject() -> tuple:
    """The run panel cleared, a message, the confirmation row hidden, the editor's span gone."""
    return (*cleared_run(), "Rejected all candidates; the document is unchanged.", *hidden_confirmation(),
            NO_RUN_SPAN)


def forget_session(demo: gr.Blocks, request: gr.Request) -> None:
    """A closed tab's run goes now, not an hour later (gradio keeps a closed session's state that
    long in case it reconnects; a reload opens a new session anyway)."""
    if request.session_hash is not None:
        demo.state_holder.delete_state(request.session_hash)
        trim_heap()


# -- selection moves ---------------------------------------------------------------------------------
def move(direction: str, document: Document, language: str, moves: Moves) -> tuple:
    """Expand or Shrink: (the document with its selection on the next larger or smaller syntax node,
    message, moves); Shrink goes back toward the cursor the walk started from (`Moves`)."""
    text, a, b = document.text, document.start, document.end
    try:
        cursor = moves.cursor_for(a, b)
        node = move_node(text, language, a, b, direction, cursor)
    except (ValueError, EditorError) as err:
        raise fail(err) from None
    if node is None:
        raise error(f"Cannot {direction} further.", "Selection")
    return Document(text, node.start, node.end), f"Selected: {escape(node.label)}", Moves(cursor, node.start, node.end)
