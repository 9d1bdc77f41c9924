"""Handlers for a regeneration: run it (streaming the engine's real steps), watch it, accept or reject it.

Each takes the `Page` first (bound in demo.py), then the event's inputs in order. A tab's run is
an `actions.Run`, its document a `Doc`.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from html import escape
from typing import Any

import gradio as gr

from editor.diffs import rebase_edit, word_diff
from editor.history import History, Regeneration, Revision, StaleRevision
from editor.text import EditorError
from engine import Canvas, SamplerSettings, Step
from engine.concepts import steer_for
from engine.distinct import redraw_repeats
from engine.guide import causal_view_for
from engine.instruct import with_instruction
from engine.length import Scorer, choose_length
from engine.pins import lay_out
from engine.resize import resizes
from engine.scope import whole_words

from . import views
from .access import AccessError, in_flight
from .actions import (
    Pins,
    Problem,
    Run,
    check_candidates,
    length_note,
    move_node,
    plan_run,
    rank_candidates,
)
from .attributions import token_attributions
from .dial import settings_from_dial
from .document_editor import NO_SPAN, EditorValue, document_key
from .documents import ensure_revision
from .engine_client import RemoteModel
from .errors import REFUSALS, error, fail, log, trim_heap
from .live import span_live, waiting_live
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
from .ties import tie_index, tied
from .trials import Trials, pick, plan_trials, remembered, run_trials

NO_RUN_SPAN = gr.update(live=NO_SPAN)  # the editor's update that takes a run's span away


def regenerate(page: Page, action: str, document: EditorValue, doc: Doc, language: str, mode: str,
               n: Any, starts: str, ends: str, include: str, heatmap: bool, *dial: Any,
               previous: Run | None = None, instruction: str | None = None) -> Iterator[tuple]:
    """Stream one regeneration: the run panel (outputs.run_outputs), a message and the editor's span
    in place (page/live.py), per step. The constraint row: text the span starts with, ends with, must
    include. Several selections are several spans of one run. A `previous` run whose candidates are
    still on offer is set aside in the new one (`back_to_aside` brings it back), not dropped. With
    `instruction`, an instruction edit (engine/instruct.py; its guidance is the dial's)."""
    began = time.monotonic()  # the metrics report the wait from here (auto's trials, checks, ranking)
    page = page.pinned()  # a model swapped in by the picker meanwhile does not change this run's
    model = page.model
    try:
        req = plan_run(page, action, document.text, document.start, document.end, language, mode, n,
                       Pins.of(starts, ends, include), settings_from_dial(dial), document.ranges, instruction)
        if not isinstance(model, RemoteModel):  # a served model's guide and concepts are the service's to refuse
            causal_view_for(model, req.settings)
            steer_for(model, req.settings)
    except (ValueError, EditorError) as err:
        raise fail(err) from None
    hide, inspector = gr.update(visible=False), views.inspector_html(None, None, 0, 0)

    aside = previous if previous is not None and previous.offered else None
    if aside is not None:
        aside.aside = None  # one run deep: what a session keeps stays bounded

    streamed = bool(getattr(model, "streams_text", False))  # a hosted model's text (page/openai_engine.py)

    def new_run(canvas: Canvas, settings: SamplerSettings = req.settings) -> Run:
        canvas = with_instruction(canvas, req.instruction, model.max_length)
        return Run(canvas, req.text, (req.start, req.end), language, doc.id, doc.revision, req.kind, settings,
                   aside=aside, model=model.label, streamed=streamed, started=began)
    span, note, score, ties = req.span, req.note, page.score, None
    try:
        if req.lengths and page.score is not None and not resizes(model):  # "auto": every length at once
            keep = len(model.codec.encode(req.text[req.start:req.end]))
            try:
                trials = plan_trials(page, req.text, span, req.lengths, keep, new_run)
            except ValueError as err:  # no length could be tried (a constraint that does not fit any)
                raise fail(err) from None
            run = trials.runs[trials.shown]
            # The shown trial is the tab's run from here on: Stop or Esc before its first step marks it
            # stopped, and the trials end at the next step (gradio cannot close a generator that waits).
            trying = f"choosing a length: trying {', '.join(map(str, req.lengths))} tokens together…"
            waiting = waiting_live(run.number, req.start, req.end, keep)
            yield *run_outputs(views.EMPTY_VIEW, f"<div class='sh-metrics'>{trying}</div>", run, hide, hide,
                               inspector, "running"), "", gr.update(live=waiting)
            yield from trial_steps(page, trials, heatmap)
            if not trials.done:
                return  # stopped
            score = remembered(page.score)  # the chosen trial's window is scored once, not again to rank it
            best, tried = pick(trials, score)
            run, note = trials.runs[best], length_note(tried, trials.lengths[best])
        else:
            if req.lengths and page.score is not None:  # a model that resizes spans itself: its length first
                try:
                    length, tried = choose_length(model, req.text, span, req.settings, req.lengths, page.score)
                except ValueError as err:
                    raise fail(err) from None
                span, note = dataclasses.replace(span, length=length), length_note(tried, length, True)
            # Several spans are one canvas; a word the model places is one row per place (engine.pins).
            run = new_run(*lay_out(model.codec, req.text, [span, *req.others], req.settings, model.max_length))
            first, last = run.canvas.slot_ranges[0]
            # One span shows masked at once; several wait for the first step to draw each in place.
            waiting = NO_RUN_SPAN if req.others else gr.update(live=waiting_live(run.number, req.start, req.end,
                                                                                 last - first))
            yield *run_outputs(views.EMPTY_VIEW, "<div class='sh-metrics'>starting…</div>", run, hide, hide,
                               inspector, "running"), note, waiting
            # Several selections of one text (a rename) show and return the first one's fill (page/ties.py).
            ties = tie_index(run.canvas) if run.canvas.ids.dim() == 1 else None
            for step in page.engine_client.steps(run.canvas, run.settings, language):
                if run.stopped:
                    return
                yield step_outputs(run, tied(step, run.canvas, ties), heatmap)
        # Candidates that repeat an earlier one are drawn again, as further steps (engine/distinct.py).
        assert run.last is not None
        places = run.canvas.ids.dim() == 2  # rows are a placed word's places: no repeats to draw again
        steps = page.engine_client.steps
        for step in () if places else redraw_repeats(run.last, lambda s: steps(run.canvas, s, language),
                                                     req.settings):
            if run.stopped:
                return
            yield step_outputs(run, tied(step, run.canvas, ties), heatmap)
    except gr.Error:
        raise
    except Exception as err:  # a model failure: say so, the document is untouched
        log.exception("the model failed")
        raise error(f"The model failed: {err}", "Model error") from None
    finally:
        trim_heap()
    yield finished(run, score, heatmap, note)


def step_outputs(run: Run, step: Step, heatmap: bool) -> tuple:
    """`step` recorded in `run`, and drawn (`drawn`)."""
    run.record(step)
    return drawn(run, step, heatmap)


def drawn(run: Run, step: Step, heatmap: bool) -> tuple:
    """A run's latest step drawn: the run view, the metrics, the editor's span (the buttons left as
    they are, so a step does not redraw them nor lose a click on Stop)."""
    metrics = views.metrics_html(step, run.canvas, checked=False, streamed=run.streamed, waited=waited(run))
    return (*run_outputs(views.step_html(step, run.canvas, 0, heatmap), metrics, run, KEEP, KEEP, KEEP, None),
            KEEP, gr.update(live=span_live(run)))


def trial_steps(page: Page, trials: Trials, heatmap: bool) -> Iterator[tuple]:
    """Every trial denoising at once; the shown one drawn per step (the others are recorded). Ends
    early when the shown run is stopped (Stop or Esc); closing this cancels every trial."""
    shown = trials.runs[trials.shown]
    for run in run_trials(page, trials):
        if shown.stopped:
            return
        if run is shown and run.last is not None:
            yield drawn(run, run.last, heatmap)


def finished(run: Run, score: Scorer | None, heatmap: bool, note: str) -> tuple:
    """The outputs once a run is done: its candidates checked and ranked, the best one drawn."""
    check_and_rank(run, score)
    return offered(run, heatmap, note)


def check_and_rank(run: Run, score: Scorer | None) -> None:
    """Each candidate checked (code: does it parse) and scored once, the candidates ordered."""
    try:
        run.problems = check_candidates(run, known_words(run.canvas.codec))
    except EditorError as err:  # the check is advice: a run is never lost to it
        run.problems = [Problem(False, f"could not check: {err}")] * len(run.last.texts if run.last else ())
    try:
        rank_candidates(run, score)
    except Exception:  # the ranking is advice too: unscored, in the loop's order
        log.exception("scoring the candidates failed")
        rank_candidates(run, None)


def waited(run: Run) -> float:
    """Seconds since the run was asked for: what the person has waited (a step's own clock starts later)."""
    return time.monotonic() - run.started


def offered(run: Run, heatmap: bool, note: str) -> tuple:
    """The outputs of a run whose candidates are checked and ranked: the best one drawn, the list."""
    choices = [(candidate_label(run, i), i) for i in run.order]
    last, best = run.last, run.order[0]
    assert last is not None
    repeated = len(last.texts) - len(run.order)
    same = f"{repeated} candidate(s) came out the same as another even when drawn again: each text is listed once. " \
        if repeated else ""
    same += "The last run's candidates are set aside: 'Last run' brings them back. " if run.aside else ""
    metrics = views.metrics_html(last, run.canvas, streamed=run.streamed, waited=waited(run))
    return (*run_outputs(done_view(run, best, heatmap), metrics, run,
                         scrub_update(run), gr.update(choices=choices, value=best, visible=True), KEEP, "done"),
            note + same + verdict(run), gr.update(live=span_live(run)))


def verdict(run: Run) -> str:
    """What the message says once a run is ranked: how to pick, or plainly that none is good."""
    if run.rough and all(run.rough):
        n = len(run.rough)
        return (f"None of the {'candidates' if n > 1 else 'results'} is good enough to suggest: "
                f"{'all are' if n > 1 else 'it is'} rough (still failing the checks, or reading much worse "
                "than your text). Regenerate, select a smaller span, or edit by hand; you can still look "
                "at them and accept one. The document is unchanged.")
    return "Pick a candidate and press Accept (Tab), or Reject all (Esc). The document is unchanged until then."


def known_words(codec: Any) -> frozenset[str]:
    """The model's whole-word tokens: real words to the prose checks' broken-word test."""
    return whole_words(codec)


def done_view(run: Run, shown: int, heatmap: bool) -> str:
    """A finished run's view: every candidate as an inline diff against the original span, best
    first, then the shown candidate's tokens (open, foldable)."""
    assert run.last is not None
    original = run.base_text[run.span[0]:run.span[1]]
    rows = []
    for i in run.order:
        s, e = run.new_span(i)
        rows.append((i, candidate_note(run, i), reads(run, i)[1], word_diff(original, run.result(i)[s:e])))
    # The list first; the shown candidate's tokens (in the editor too) can be folded away under it.
    tokens = views.step_html(run.last, run.canvas, shown, heatmap)
    return (views.candidates_html(rows, shown) +
            f'<details class="sh-tokens" open><summary>tokens of candidate {shown + 1}</summary>{tokens}</details>')


def back_to_aside(run: Run | None, heatmap: bool) -> tuple:
    """'Last run': the run set aside when this one started comes back, with its candidates as
    they were ranked; this one (if finished) is set aside in its place, so the button swaps the two."""
    if run is None or run.aside is None:
        raise error("No earlier candidates to go back to: they were accepted, rejected, or there were none.",
                    "Last run")
    back, run.aside = run.aside, None
    back.aside = run if run.offered else None
    return offered(back, heatmap, "The candidates of the last run are back. ")


def run_action(page: Page, action: str, request: gr.Request, previous: Run | None, *inputs: Any,
               instruction: str | None = None) -> Iterator[tuple]:
    """A regenerate button: `regenerate`, straight to the engine, whose scheduler is the one queue
    (runs of every user share its forwards); a user has at most limits.runs_per_user runs in flight
    (per login, or per page without one)."""
    name = getattr(request, "username", None)
    user = ("login", name) if name else ("page", getattr(request, "session_hash", None))
    try:
        yield from in_flight(page.runs, user, regenerate(page, action, *inputs, previous=previous,
                                                         instruction=instruction))
    except AccessError as err:
        raise fail(err) from None


def run_instructed(page: Page, request: gr.Request, previous: Run | None, instruction: str,
                   *inputs: Any) -> Iterator[tuple]:
    """The instruction box's Enter: the selection (or fill at the cursor) as an instruction edit."""
    yield from run_action(page, "selection_or_fill", request, previous, *inputs, instruction=instruction)


def candidate_label(run: Run, i: int) -> str:
    """One line per candidate: its new text, how it reads beside the original, and what is wrong with
    it (does not parse, or parses as another kind of node)."""
    s, e = run.new_span(i)
    piece = run.result(i)[s:e].replace("\n", "⏎")
    return f"{i + 1}: {piece[:60]}{'…' if len(piece) > 60 else ''}  {candidate_note(run, i)}".rstrip()


def candidate_note(run: Run, i: int) -> str:
    """How a candidate reads, and what is wrong with it, in a few words."""
    words = reads(run, i)[0]
    problem = run.problems[i]
    mark = "" if problem is None else f"  ≠ {problem}" if problem.parses else f"  ✗ {problem}"
    rough = "  · rough" if i < len(run.rough) and run.rough[i] else ""
    return (f"· {words}" if words else "") + rough + mark


READS_ALIKE = 0.1  # window NLLs closer than this (nats per token) read alike to a person


def reads(run: Run, i: int) -> tuple[str, str]:
    """How candidate `i` reads beside the original text, to the base model, in words; and the figures
    behind them (its window NLL and the original's) for a tooltip. ("", "") when unscored."""
    nll, base = run.scores[i] if i < len(run.scores) else None, run.original_score
    if nll is None or base is None:
        return "", ""
    d = nll - base
    words = ("reads better than yours" if d < -READS_ALIKE else "reads like yours" if d <= READS_ALIKE
             else "reads much worse than yours" if d > run.settings.rough_margin else "reads worse than yours")
    return words, (f"the base model's loss per token (NLL) over the edit and the text around it: {nll:.2f}; "
                   f"your text: {base:.2f} (lower reads more naturally)")


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
    return (views.metrics_html(run.last, run.canvas, stopped=not done, streamed=run.streamed, waited=waited(run)),
            scrub_update(run),
            *controls("done" if done else "stopped"), gr.update(live=span_live(run, stopped=not done)))


def stopped_metrics(run: Run | None) -> str:
    """The metrics of a stopped run, drawn once more after Stop's outputs (see demo.py)."""
    return stopped(run)[0]


def show_step(k: Any, run: Run | None, candidate: Any, heatmap: bool) -> tuple:
    """(live view, metrics, the editor's span) at step `k` of one candidate."""
    if run is None or not run.steps:
        return views.EMPTY_VIEW, "", KEEP
    k = max(1, min(int(k or 1), len(run.steps)))
    step, b = run.steps[k - 1], int(candidate or 0)
    view = done_view(run, b, heatmap) if k == len(run.steps) and run.order else views.step_html(step, run.canvas, b,
                                                                                                 heatmap)
    return (view, views.metrics_html(step, run.canvas, streamed=run.streamed),
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


def inspect_token(page: Page, run: Run | None, k: Any, candidate: Any, evt: gr.SelectData) -> str:
    if run is None or not run.steps:
        return views.inspector_html(None, None, 0, 0)
    step = run.steps[max(0, min(int(k or len(run.steps)), len(run.steps)) - 1)]
    b, pos = int(candidate or 0), int(evt.index)
    concepts = token_attributions(page.model, run, step, b, pos)
    return views.inspector_html(step, run.canvas, b, pos, concepts, run.streamed)


# -- accept / reject --------------------------------------------------------------------------------
def accept(page: Page, document: EditorValue, run: Run | None, candidate: Any, doc: Doc, name: str, language: str,
           request: gr.Request) -> tuple:
    """Record the chosen candidate as the document's new head (asking first if it does not parse)."""
    return _accept(page, document.text, run, candidate, doc, name, language, "accept", False, request)


def accept_branch(page: Page, document: EditorValue, run: Run | None, candidate: Any, doc: Doc, name: str,
                  language: str, request: gr.Request) -> tuple:
    """Record the chosen candidate as a branch off the revision the run started on."""
    return _accept(page, document.text, run, candidate, doc, name, language, "branch", False, request)


def accept_anyway(page: Page, pending: str | None, document: EditorValue, run: Run | None, candidate: Any, doc: Doc,
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
    editor = gr.update(value=EditorValue(result, end, end), live=NO_SPAN, shown=document_key(rev.document_id))
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
    regen = Regeneration(run.new_spans(i), run.model or page.model.label, dataclasses.asdict(run.settings),
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
def move(direction: str, document: EditorValue, language: str, moves: Moves) -> tuple:
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
    moves = Moves(cursor, node.start, node.end)
    return EditorValue(text, node.start, node.end), f"Selected: {escape(node.label)}", moves
