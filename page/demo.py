"""The page's Blocks: the panels (layout.py) wired to the handlers (documents.py, runs.py)."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from editor.history import History
from editor.languages import language_for
from editor.text import MAX_DOCUMENT_BYTES
from engine import DiffusionLM
from engine.guide import default_preset
from engine.length import Scorer
from engine.scheduler import MAX_BATCH

from . import documents, exports, gate, layout, runs
from .access import Limits, Logins
from .actions import LENGTH_MODES
from .dial import preset_values, remember, restore
from .engine_client import EngineClient
from .errors import Refusal
from .models import Models, opened, picker, switch
from .outputs import KEEP
from .state import NEW_DOC, NO_MOVES, Page
from .static import CSS, JS

# The editor's keys fire the same handlers as the buttons: the buttons' endpoints are the API.
KEY: dict[str, Any] = {"api_visibility": "private"}
WAITING_RUNS = MAX_BATCH  # runs Gradio hands to the engine at once (what its scheduler batches); more wait in Gradio


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
               scorer: Scorer | None = None, engine_client: EngineClient | None = None,
               models: Models | None = None) -> gr.Blocks:
    """The page for one loaded model and one history database; each login sees only its own documents.
    Candidates are ranked by `scorer`, by default the model's base fluency (none: unranked). Runs go
    to `engine_client` (default: in process, over `model`); `model` is what the page reads locally.
    `models`: the model picker's choices (page/models.py; none: no picker)."""
    page = Page.for_model(model, history, limits, scorer, engine_client)
    with gr.Blocks(title="Sharpen", fill_width=True, delete_cache=(exports.EXPORT_AGE, exports.EXPORT_AGE)) as demo:
        tab = Tab(gr.State(NEW_DOC), gr.State(None), gr.State(NO_MOVES), gr.State(None), gr.State([]))
        docs = layout.documents_sidebar()
        chooser = picker(models) if models is not None else ()
        dial = layout.dial_drawer(default_preset(model), chooser)
        top = layout.topbar(model.label, model.demonstration, model.attention_block)
        with gr.Row(elem_id="main"):
            with gr.Column(scale=3, min_width=480):
                ed = layout.editor()
                ib = layout.instruction_box()
            with gr.Column(scale=2, min_width=360, elem_id="side"):
                tabs, rv, hp = layout.side_panel(page.score is not None)
        ui = Ui(tab, docs, top, ed, rv, dial, hp, tabs, ib)
        _wire_documents(page, demo, ui)
        _wire_runs(page, demo, ui)
        _wire_history(page, ui)
        if models is not None:
            chooser[0].input(bind(switch, page, models), chooser[0],
                             [*chooser, top.title, dial.preset, *dial.controls], concurrency_limit=1,
                             show_progress="hidden")  # its status line says what it is doing
            demo.load(bind(opened, page, models), None, [*chooser, top.title], **KEY)
        answer_refusals(demo, ed.message)
    return demo


def answer_refusals(demo: gr.Blocks, message: gr.components.Component) -> None:
    """Every handler's refusals (errors.Refusal) answered in `message`, every other output left as it
    is: gr.Error would mark each output of the event as failed and block the page until dismissed.
    Events without the message line say it in a warning. Callers other than the page (Gradio's page
    marks its requests "x-gradio-user: app") still get an error, so a script sees that it was refused."""
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and not block_fn.is_cancel_function:
            block_fn.fn = answering(block_fn.fn, list(block_fn.outputs), message)


def answering(fn: Callable[..., Any], outputs: list, message: gr.components.Component) -> Callable[..., Any]:
    """`fn` with its refusals answered as `answer_refusals` says; it also takes the request."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    takes_request = any(getattr(fn, "__annotations__", {}).get(p.name) in (gr.Request, "gr.Request") for p in params)

    def answered(refusal: Refusal, request: gr.Request | None) -> Any:
        if request is None or request.headers.get("x-gradio-user") != "app":  # not the page: an API caller
            raise gr.Error(refusal.message, title=refusal.title)
        out = [KEEP] * len(outputs)
        if message in outputs:
            out[outputs.index(message)] = f"⚠ {refusal.message}"
        else:
            gr.Warning(refusal.message, title=refusal.title)
        return out[0] if len(out) == 1 else tuple(out)

    def split(args: tuple) -> tuple[tuple, gr.Request | None]:
        request = next((a for a in args if isinstance(a, gr.Request)), None)
        return (args if takes_request else tuple(a for a in args if a is not request)), request

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def handler(*args: Any) -> Any:
            given, request = split(args)
            try:
                yield from fn(*given)
            except Refusal as refusal:
                yield answered(refusal, request)
    else:
        @functools.wraps(fn)
        def handler(*args: Any) -> Any:
            given, request = split(args)
            try:
                return fn(*given)
            except Refusal as refusal:
                return answered(refusal, request)
    if not takes_request:  # Gradio fills a positional parameter typed gr.Request: one more, after the others
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        at = next((i for i, p in enumerate(params) if p.kind not in positional), len(params))
        extra = inspect.Parameter("_request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
        handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*params[:at], extra, *params[at:]])
        handler.__annotations__ = {**getattr(fn, "__annotations__", {}), "_request": gr.Request}
    return handler


@dataclass
class Tab:
    """A tab's state: its document, its run, its Expand / Shrink walk, the accept awaiting confirmation,
    the revisions undone by the editor's Ctrl/Cmd+Z (newest last)."""

    doc: gr.State
    run: gr.State
    moves: gr.State
    pending: gr.State
    redo: gr.State


@dataclass
class Ui:
    """Every panel of one page, and the outputs lists the handlers fill (outputs.py, in that order)."""

    tab: Tab
    docs: layout.Documents
    top: layout.Topbar
    ed: layout.Editor
    rv: layout.RunView
    dial: layout.Dial
    hp: layout.HistoryPanel
    tabs: gr.Tabs
    ib: layout.InstructionBox | None = None

    @property
    def document(self) -> list:
        """What follows the tab's document (outputs.document_outputs); the text itself is ed.document."""
        return [self.tab.doc, *self.hp.outputs, self.top.name, self.top.language, self.top.rename,
                *self.docs.outputs, self.top.unsaved]

    @property
    def run(self) -> list:
        rv = self.rv
        return [rv.live, rv.metrics, self.tab.run, rv.scrub, rv.candidate, rv.inspector, rv.accept, rv.branch,
                rv.reject, self.ed.stop]

    @property
    def confirmation(self) -> list:
        return [self.rv.confirm, self.rv.confirm_text, self.tab.pending]


def _wire_documents(page: Page, demo: gr.Blocks, ui: Ui) -> None:
    docs, top, ed, tab = ui.docs, ui.top, ui.ed, ui.tab
    shown = [ed.document, *ui.document, *ui.run, ed.message]
    demo.load(bind(documents.reopen, page), None, shown, api_name="reopen").then(None, js=JS["ready"])
    typed = [ed.document, tab.doc, top.name, top.language]  # kept before another document is shown
    # What stores the typing, and the draft kept at a pause in it, run one at a time in the order they
    # were sent: a draft sent after a Save reads the tab's document as that Save left it.
    one = {"concurrency_id": "document", "concurrency_limit": 1}
    docs.new.click(bind(documents.new_document, page), typed, shown, api_name="new_document", **one)
    docs.upload.upload(bind(documents.open_file, page), [docs.upload, *typed], shown, api_name="open_file", **one)
    docs.listed.input(bind(documents.open_document, page), [docs.listed, *typed], shown, api_name="open_document",
                      **one)
    docs.archive.click(bind(documents.archive, page), tab.doc, shown, api_name="archive")
    docs.unarchive.click(bind(documents.unarchive, page), [docs.archived, tab.doc], [*docs.outputs, ed.message],
                         api_name="unarchive")
    top.rename.click(bind(documents.rename, page), [top.name, tab.doc], [*docs.outputs, ed.message],
                    api_name="rename")
    top.name.change(lambda n: language_for(n or ""), top.name, top.language)
    top.language.change(lambda lang: gr.update(language=lang), top.language, ed.document)
    saving = [ed.document, tab.doc, top.name, top.language]
    to_history = {"fn": _show_history, "inputs": [tab.pending, ed.message], "outputs": ui.tabs, **KEY}
    for save, api in ((top.save.click, {"api_name": "save_revision"}),
                      (ed.document.save, {"api_name": "save_by_key", **KEY})):  # the button, or Ctrl+S
        save(bind(documents.save, page), saving, [ed.document, *ui.document, ed.message], **api,
             **one).success(**to_history)
    # Download keeps the API name of the old "Save / export" button: a revision, and the file.
    top.download.click(bind(documents.download, page), saving, [ed.download, ed.document, *ui.document, ed.message],
                       api_name="save", **one).success(None, js=JS["download"])
    # Typing is kept as the document's draft at each pause, so a reload brings it back.
    ed.document.typed(bind(documents.keep_draft, page), saving, top.unsaved, trigger_mode="always_last", **KEY,
                      **one)
    ed.document.kept_typing(bind(documents.kept_typing, page), [ed.document, tab.doc, top.name], shown, **KEY, **one)


def _wire_runs(page: Page, demo: gr.Blocks, ui: Ui) -> None:
    top, ed, rv, dial, tab = ui.top, ui.ed, ui.rv, ui.dial, ui.tab
    # tab.run first: a finished run's candidates are set aside in the new run, not dropped
    inputs = [tab.run, ed.document, tab.doc, top.language, dial.mode, dial.n_tokens, dial.constraint,
              dial.ends_with, dial.include, rv.heatmap, *dial.controls]
    started = []
    # The buttons, and the editor's keys (Ctrl/Cmd+Enter: the selection, or fill at the cursor without one).
    triggers = ((ed.go_selection.click, "selection", {}), (ed.go_node.click, "node", {}),
                (ed.go_fill.click, "fill", {}), (ed.go_holes.click, "holes", {}),
                (ed.document.regenerate, "selection_or_fill", KEY),
                (ed.document.regenerate_node, "node", KEY))
    for trigger, action, api in triggers:
        trigger(_show_run, None, ui.tabs, queue=False, api_visibility="private", js=JS["focus"])
        # Runs go to the engine's scheduler, the one queue; page.runs caps each user's runs in flight.
        started.append(trigger(bind(runs.run_action, page, action), inputs, [*ui.run, ed.message, ed.document],
                               concurrency_id="model", concurrency_limit=WAITING_RUNS,
                               api_name=f"regenerate_{action}", **api))
    if ui.ib is not None:  # Ctrl/Cmd+K's box: Enter runs the selection as an instruction edit
        demo.load(None, js=JS["instruct"])
        ui.ib.text.submit(_show_run, None, ui.tabs, queue=False, api_visibility="private", js=JS["instruct_close"])
        started.append(ui.ib.text.submit(bind(runs.run_instructed, page), [tab.run, ui.ib.text, *inputs[1:]],
                                         [*ui.run, ed.message, ed.document], concurrency_id="model",
                                         concurrency_limit=WAITING_RUNS, api_name="regenerate_instructed"))
    halted = [rv.metrics, rv.scrub, rv.accept, rv.branch, rv.reject, ed.stop, ed.document]
    # A step already on its way when Stop lands can arrive after it and redraw "denoising": once the
    # stop's own outputs are in, the metrics are drawn again from the run (no step can follow then).
    for stop in (ed.stop.click(runs.stopped, tab.run, halted, cancels=started),
                 ed.document.stop(runs.stopped, tab.run, halted, cancels=started, **KEY)):
        stop.then(runs.stopped_metrics, tab.run, rv.metrics, queue=False, api_visibility="private")
    dial.preset.input(preset_values, dial.preset, dial.controls)  # a person's choice, not a restored one
    # The dial is kept in the browser (not secret: a fixed key lets it outlive a restart of the page).
    kept = gr.BrowserState({}, storage_key="sharpen-dial", secret="sharpen-dial-settings")
    fields = [dial.mode, dial.n_tokens, dial.constraint, dial.preset, *dial.controls]
    start = dial.preset.value  # the model's own preset (engine.guide.default_preset)
    demo.load(functools.partial(restore, length_modes=LENGTH_MODES, start=start), kept, fields, **KEY)
    gr.on([f.change for f in fields], remember, fields, kept, trigger_mode="always_last", **KEY)

    view_inputs = [rv.scrub, tab.run, rv.candidate, rv.heatmap]
    # .input/.release fire on the person's moves only, not when a run updates these controls.
    for listener in (rv.scrub.input, rv.candidate.input, rv.heatmap.input):
        listener(runs.show_step, view_inputs, [rv.live, rv.metrics, ed.document], trigger_mode="always_last")
    shown, redrawn = [tab.run, rv.candidate, rv.heatmap], [rv.live, rv.metrics, ed.document]
    ed.document.next_candidate(runs.next_candidate, shown, [rv.candidate, *redrawn], **KEY)
    ed.document.previous_candidate(runs.previous_candidate, shown, [rv.candidate, *redrawn], **KEY)
    ed.document.scrub(runs.scrub_to, shown, [rv.scrub, *redrawn], trigger_mode="always_last", **KEY)
    inspect = bind(runs.inspect_token, page)
    rv.live.select(inspect, [tab.run, rv.scrub, rv.candidate], rv.inspector)
    ed.document.select(inspect, [tab.run, rv.scrub, rv.candidate], rv.inspector, **KEY)

    accepted = [ed.document, *ui.document, *ui.run, ed.message, *ui.confirmation]
    accept_in = [ed.document, tab.run, rv.candidate, tab.doc, top.name, top.language]
    to_history = {"fn": _show_history, "inputs": [tab.pending, ed.message], "outputs": ui.tabs, **KEY}
    rv.accept.click(bind(runs.accept, page), accept_in, accepted, api_name="accept").success(**to_history)
    ed.document.accept(bind(runs.accept, page), accept_in, accepted, **KEY).success(**to_history)
    rv.branch.click(bind(runs.accept_branch, page), accept_in, accepted, api_name="accept_branch"
                    ).success(**to_history)
    rv.accept_anyway.click(bind(runs.accept_anyway, page), [tab.pending, *accept_in], accepted,
                           api_name="accept_anyway").success(**to_history)
    ed.document.accept_anyway(bind(runs.accept_anyway, page), [tab.pending, *accept_in], accepted,
                              **KEY).success(**to_history)
    declined = ([tab.run, rv.candidate], [*ui.confirmation, ed.message, ed.document])
    rv.cancel.click(runs.cancel_accept, *declined, api_name="cancel_accept")
    ed.document.cancel_accept(runs.cancel_accept, *declined, **KEY)
    rv.last.click(runs.back_to_aside, [tab.run, rv.heatmap], [*ui.run, ed.message, ed.document],
                  api_name="last_candidates")
    rejected = [*ui.run, ed.message, *ui.confirmation, ed.document]
    rv.reject.click(runs.reject, None, rejected, api_name="reject")
    ed.document.reject(runs.reject, None, rejected, **KEY)
    demo.unload(bind(runs.forget_session, demo))

    for direction, button, key in (("expand", ed.expand, ed.document.expand),
                                   ("shrink", ed.shrink, ed.document.shrink)):
        moved = ([ed.document, top.language, tab.moves], [ed.document, ed.message, tab.moves])
        button.click(bind(runs.move, direction), *moved, api_name=direction)
        key(bind(runs.move, direction), *moved, **KEY)


def _wire_history(page: Page, ui: Ui) -> None:
    hp, top, ed, tab = ui.hp, ui.top, ui.ed, ui.tab
    hp.diff.click(bind(documents.show_diff, page), [hp.rev_a, hp.rev_b], hp.diff_view, api_name="diff")
    hp.restore.click(bind(documents.restore, page), [hp.rev_b, tab.doc, top.name, top.language],
                     [ed.document, *ui.document, *ui.run, ed.message], api_name="restore")
    hp.label.click(bind(documents.label, page), [hp.rev_b, hp.label_text, tab.doc], hp.outputs, api_name="label")
    stepped = [ed.document, *ui.document, *ui.run, ed.message, tab.redo]
    for key, handler in ((ed.document.undo_revision, documents.undo_revision),
                         (ed.document.redo_revision, documents.redo_revision)):
        key(bind(handler, page), [tab.doc, tab.redo, top.name, top.language], stepped, **KEY)
    hp.tree.select(documents.pick_revision, None, [hp.rev_a, hp.rev_b])


def _show_run() -> gr.Tabs:
    return gr.Tabs(selected=layout.SIDE_TABS[0])


def _show_history(pending: str | None, message: str) -> gr.Tabs:
    """The History tab after a save or an accept; an accept still waiting for confirmation, or one
    refused (its message says why), stays put."""
    return gr.Tabs() if pending or str(message).startswith("⚠") else gr.Tabs(selected=layout.SIDE_TABS[1])


def launch(demo: gr.Blocks, auth: Any = None, **kwargs: Any) -> gr.Blocks:
    """Launch with Sharpen's own CSS (static/), nothing fetched from elsewhere; uploads past the
    document limit refused before they are stored; `Logins` checked through page/gate.py."""
    if isinstance(auth, Logins):
        auth = gate.login_check(auth)
    demo.launch(css_paths=[CSS], footer_links=[], run_history=False, auth=auth, max_file_size=MAX_DOCUMENT_BYTES,
                app_kwargs=gate.app_kwargs(), **kwargs)
    return demo
