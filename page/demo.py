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
from .static import CSS, JS

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
    ed.save.click(bind(documents.save, page), [ed.document, doc, ed.name, ed.language],
                  [ed.download, doc, *hp.outputs, ed.message], api_name="save")


def _wire_runs(page: Page, demo: gr.Blocks, ed: layout.Editor, rv: layout.RunView, dl: layout.Dial,
               hp: layout.HistoryPanel, doc: gr.State, run: gr.State) -> None:
    inputs = [ed.document, ed.sel_start, ed.sel_end, doc, ed.language, dl.mode, dl.n_tokens, dl.constraint,
              rv.heatmap, *dl.controls]
    outputs = [rv.live, rv.metrics, run, rv.scrub, rv.candidate, ed.message]
    started = []
    for button, action in ((ed.go_selection, "selection"), (ed.go_node, "node"), (ed.go_fill, "fill")):
        # Runs wait in Turns, not in Gradio's queue, so Turns can see (and cap) each user's runs.
        started.append(button.click(bind(runs.run_action, page, action), inputs, outputs, js=JS["read_selection"],
                                    concurrency_id="model", concurrency_limit=WAITING_RUNS,
                                    api_name=f"regenerate_{action}"))
    ed.stop.click(runs.stopped, run, [rv.metrics, rv.scrub], cancels=started)
    dl.preset.change(preset_values, dl.preset, dl.controls)

    view_inputs = [rv.scrub, run, rv.candidate, rv.heatmap]
    # .input/.release fire on the person's moves only, not when a run updates these controls.
    for listener in (rv.scrub.input, rv.candidate.input, rv.heatmap.input):
        listener(runs.show_step, view_inputs, [rv.live, rv.metrics], trigger_mode="always_last")
    rv.live.select(runs.inspect_token, [run, rv.scrub, rv.candidate], rv.inspector)

    accepted = [ed.document, doc, *hp.outputs, run, rv.candidate, rv.scrub, ed.message]
    accept_in = [ed.document, run, rv.candidate, doc, ed.name, ed.language]
    rv.accept.click(bind(runs.accept, page), accept_in, accepted, api_name="accept")
    rv.branch.click(bind(runs.accept_branch, page), accept_in, accepted, api_name="accept_branch")
    rv.reject.click(runs.reject, None, [run, rv.live, rv.candidate, rv.scrub, ed.message], api_name="reject")
    demo.unload(bind(runs.forget_session, demo))

    for button, direction in ((ed.expand, "expand"), (ed.shrink, "shrink")):
        button.click(bind(runs.move, page, direction), [ed.document, ed.sel_start, ed.sel_end, ed.language],
                     [ed.sel_start, ed.sel_end, ed.message], js=JS["read_selection"], api_name=direction
                     ).then(None, [ed.sel_start, ed.sel_end], [ed.sel_start, ed.sel_end], js=JS["set_selection"])


def _wire_history(page: Page, ed: layout.Editor, hp: layout.HistoryPanel, doc: gr.State) -> None:
    hp.diff.click(bind(documents.show_diff, page), [hp.rev_a, hp.rev_b], hp.diff_view, api_name="diff")
    hp.restore.click(bind(documents.restore, page), [hp.rev_b, doc], [ed.document, doc, *hp.outputs, ed.message],
                     api_name="restore")
    hp.label.click(bind(documents.label, page), [hp.rev_b, hp.label_text, doc], hp.outputs, api_name="label")


def launch(demo: gr.Blocks, **kwargs: Any) -> gr.Blocks:
    """Launch with Sharpen's own CSS (static/), nothing fetched from elsewhere."""
    demo.launch(css_paths=[CSS], footer_links=[], run_history=False, **kwargs)
    return demo
