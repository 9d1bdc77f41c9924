"""The page's Blocks: the panels (layout.py) wired to the handlers (documents.py, runs.py)."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from html import escape
from typing import Any

import gradio as gr

from editor.history import History
from editor.languages import language_for
from engine import DiffusionLM
from engine.length import Scorer

from . import documents, exports, layout, runs
from .access import Limits
from .dial import preset_values
from .state import NEW_DOC, Page
from .static import CSS

# The editor's keys fire the same handlers as the buttons: the buttons' endpoints are the API.
KEY: dict[str, Any] = {"api_visibility": "private"}
WAITING_RUNS = 16  # runs Gradio hands to Turns at once (each waits in a worker thread); more queue in Gradio


def bind(fn: Callable[..., Any], *first: Any) -> Callable[..., Any]:
    """`fn` with its first arguments given, as Gradio reads a handler: the remaining parameters, their
    type hints (so gr.Request and gr.SelectData are still filled in), its name, generator or not."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any) -> Any:
            yield from fn(*first, *args, **kwargs)
    else:
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any) -> Any:
            return fn(*first, *args, **kwargs)
    signature = inspect.signature(fn)
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[len(first):])
    return handler


def build_demo(model: DiffusionLM, history: History, limits: Limits | None = None,
               scorer: Scorer | None = None) -> gr.Blocks:
    """The page for one loaded model and one history database; each login sees only its own documents.
    Candidates are ranked by `scorer`, by default the model's base fluency (none: unranked)."""
    page = Page.for_model(model, history, limits, scorer)
    with gr.Blocks(title="Sharpen", delete_cache=(exports.EXPORT_AGE, exports.EXPORT_AGE)) as demo:
        gr.Markdown(f"## Sharpen\nModel: **{escape(model.label)}**. Select text, regenerate it, "
                    "watch each denoising step, accept a candidate.")
        doc = gr.State(NEW_DOC)
        run = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                ed = layout.editor()
                rv = layout.run_view()
            with gr.Column(scale=2):
                dl = layout.dial()
                hp = layout.history_panel()
        _wire_documents(page, ed, rv, hp, doc, run)
        _wire_runs(page, demo, ed, rv, dl, hp, doc, run)
        _wire_history(page, ed, hp, doc)
    return demo


def _wire_documents(page: Page, ed: layout.Editor, rv: layout.RunView, hp: layout.HistoryPanel,
                    doc: gr.State, run: gr.State) -> None:
    opened = [ed.document, doc, ed.name, ed.language, *hp.outputs, run, rv.live, ed.message]
    ed.new.click(bind(documents.new_document, page), None, opened, api_name="new_document")
    ed.upload.upload(bind(documents.open_file, page), ed.upload, opened, api_name="open_file")
    ed.name.change(lambda n: language_for(n or ""), ed.name, ed.language)
    ed.language.change(lambda lang: gr.update(language=lang), ed.language, ed.document)
    ed.save.click(bind(documents.save, page), [ed.document, doc, ed.name, ed.language],
                  [ed.download, doc, *hp.outputs, ed.message], api_name="save")


def _wire_runs(page: Page, demo: gr.Blocks, ed: layout.Editor, rv: layout.RunView, dl: layout.Dial,
               hp: layout.HistoryPanel, doc: gr.State, run: gr.State) -> None:
    inputs = [ed.document, doc, ed.language, dl.mode, dl.n_tokens, dl.constraint, rv.heatmap, *dl.controls]
    outputs = [rv.live, rv.metrics, run, rv.scrub, rv.candidate, ed.message, ed.document]
    started = []
    # The buttons, and the editor's keys (Ctrl/Cmd+Enter: the selection, or fill at the cursor without one).
    triggers = ((ed.go_selection.click, "selection", {}), (ed.go_node.click, "node", {}),
                (ed.go_fill.click, "fill", {}), (ed.document.regenerate, "selection_or_fill", KEY),
                (ed.document.regenerate_node, "node", KEY))
    for trigger, action, api in triggers:
        # Runs wait in Turns, not in Gradio's queue, so Turns can see (and cap) each user's runs.
        started.append(trigger(bind(runs.run_action, page, action), inputs, outputs, concurrency_id="model",
                               concurrency_limit=WAITING_RUNS, api_name=f"regenerate_{action}", **api))
    ed.stop.click(runs.stopped, run, [rv.metrics, rv.scrub, ed.document], cancels=started)
    ed.document.stop(runs.stopped, run, [rv.metrics, rv.scrub, ed.document], cancels=started, **KEY)
    dl.preset.change(preset_values, dl.preset, dl.controls)

    view_inputs = [rv.scrub, run, rv.candidate, rv.heatmap]
    # .input/.release fire on the person's moves only, not when a run updates these controls.
    for listener in (rv.scrub.input, rv.candidate.input, rv.heatmap.input):
        listener(runs.show_step, view_inputs, [rv.live, rv.metrics, ed.document], trigger_mode="always_last")
    shown, redrawn = [run, rv.candidate, rv.heatmap], [rv.live, rv.metrics, ed.document]
    ed.document.next_candidate(runs.next_candidate, shown, [rv.candidate, *redrawn], **KEY)
    ed.document.previous_candidate(runs.previous_candidate, shown, [rv.candidate, *redrawn], **KEY)
    ed.document.scrub(runs.scrub_to, shown, [rv.scrub, *redrawn], trigger_mode="always_last", **KEY)
    rv.live.select(runs.inspect_token, [run, rv.scrub, rv.candidate], rv.inspector)

    accepted = [ed.document, doc, *hp.outputs, run, rv.candidate, rv.scrub, ed.message]
    accept_in = [ed.document, run, rv.candidate, doc, ed.name, ed.language]
    rv.accept.click(bind(runs.accept, page), accept_in, accepted, api_name="accept")
    ed.document.accept(bind(runs.accept, page), accept_in, accepted, **KEY)
    rv.branch.click(bind(runs.accept_branch, page), accept_in, accepted, api_name="accept_branch")
    rejected = [run, rv.live, rv.candidate, rv.scrub, ed.message, ed.document]
    rv.reject.click(runs.reject, None, rejected, api_name="reject")
    ed.document.reject(runs.reject, None, rejected, **KEY)
    demo.unload(bind(runs.forget_session, demo))

    for direction, button, key in (("expand", ed.expand, ed.document.expand),
                                   ("shrink", ed.shrink, ed.document.shrink)):
        move = bind(runs.move, page, direction)
        button.click(move, [ed.document, ed.language], [ed.document, ed.message], api_name=direction)
        key(move, [ed.document, ed.language], [ed.document, ed.message], **KEY)


def _wire_history(page: Page, ed: layout.Editor, hp: layout.HistoryPanel, doc: gr.State) -> None:
    hp.diff.click(bind(documents.show_diff, page), [hp.rev_a, hp.rev_b], hp.diff_view, api_name="diff")
    hp.restore.click(bind(documents.restore, page), [hp.rev_b, doc], [ed.document, doc, *hp.outputs, ed.message],
                     api_name="restore")
    redo = gr.State([])  # revisions undone by the editor's Ctrl/Cmd+Z, newest last
    stepped = [ed.document, doc, *hp.outputs, redo, ed.message]
    ed.document.undo_revision(bind(documents.undo_revision, page), [doc, redo], stepped, **KEY)
    ed.document.redo_revision(bind(documents.redo_revision, page), [doc, redo], stepped, **KEY)
    hp.label.click(bind(documents.label, page), [hp.rev_b, hp.label_text, doc], hp.outputs, api_name="label")


def launch(demo: gr.Blocks, **kwargs: Any) -> gr.Blocks:
    """Launch with Sharpen's own CSS (static/), nothing fetched from elsewhere."""
    demo.launch(css_paths=[CSS], footer_links=[], run_history=False, **kwargs)
    return demo
