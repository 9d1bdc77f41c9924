"""The page's Blocks: select text, regenerate it, watch every denoising step, keep history."""
from __future__ import annotations

import ctypes
import dataclasses
import logging
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
from sqlalchemy.exc import SQLAlchemyError

from editor.diffs import rebase_edit
from editor.history import History, Regeneration, StaleRevision
from editor.languages import language_for, supported
from editor.text import EditorError, check_document, index_to_utf16
from engine import DEFAULT_PRESET, PRESETS, DiffusionLM, build_canvas
from engine.length import choose_length
from engine.score import fluency_for

from . import exports, views
from .access import AccessError, Limits, Turns, check_budget, in_turn
from .actions import (
    LENGTH_MODES,
    Run,
    Scorer,
    auto_lengths,
    check_candidates,
    length_note,
    make_span,
    move_node,
    page_document,
    rank_candidates,
    selection,
    syntax_node,
)
from .dial import controls, preset_values, settings_from_dial
from .engine_client import EngineClient, InProcessEngine

STATIC = Path(__file__).resolve().parents[1] / "static"
JS = {name: (STATIC / f"{name}.js").read_text() for name in ("read_selection", "set_selection", "tokens")}
NEW_DOC: dict[str, Any] = {"id": None, "revision": None}
log = logging.getLogger(__name__)
WAITING_RUNS = 16  # runs Gradio hands to Turns at once (each waits in a worker thread); more queue in Gradio


# glibc keeps freed heap pages (a run's transient logits, its per-step documents) in the process
# unless asked; None where the C library has no malloc_trim.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)

# What a handler turns into a message in the page instead of a stack trace.
REFUSALS = (EditorError, ValueError, OSError, SQLAlchemyError)


def _error(message: str, title: str = "Error") -> gr.Error:
    """The page's error popup. gr.Error renders its message as HTML and messages quote what people
    typed (a constraint, a file name) or what a model wrote, so every message is escaped, here."""
    return gr.Error(escape(message), title=title)


def _trim_heap() -> None:
    """Give memory freed by a finished or forgotten run back to the OS (docs/PERFORMANCE.md)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _fail(err: Exception) -> gr.Error:
    """The message for a refusal caught in a handler; call it inside `except`: the traceback goes to the log."""
    log.exception("refused: %s", err)
    if isinstance(err, SQLAlchemyError):
        return _error(f"The database refused: {getattr(err, 'orig', None) or err}", "Database error")
    return _error(str(err), type(err).__name__)


def build_demo(model: DiffusionLM, history: History, limits: Limits | None = None,
               scorer: Scorer | None = None, engine: EngineClient | None = None) -> gr.Blocks:
    """The page for one loaded model and one history database; each login sees only its own documents.
    Candidates are ranked by `scorer`, by default the model's base fluency (none: unranked). Runs go
    to `engine` (default: in process, over `model`); `model` is what the page reads locally."""
    limits = limits or Limits()
    engine = engine or InProcessEngine(model)
    fluency = fluency_for(model) if scorer is None else None
    score = scorer if scorer is not None else fluency.window_nll if fluency is not None else None
    turns = Turns(limits.runs_per_user)

    def mine(request: gr.Request | None) -> History:
        """The history as the logged-in user sees it (without a login: the one local user, None)."""
        return history.as_user(getattr(request, "username", None))

    # -- documents ---------------------------------------------------------------------------------
    def history_outputs(h: History, doc: dict) -> tuple:
        revs = h.history(doc["id"]) if doc["id"] is not None else []
        children = h.tree(doc["id"]) if doc["id"] is not None else {}
        choices = [(views.revision_label(r), r.id) for r in revs]
        last = choices[-1][1] if choices else None
        first = choices[0][1] if choices else None
        return (views.history_html(revs, children, doc["revision"]), gr.update(choices=choices, value=first),
                gr.update(choices=choices, value=last))

    def new_document():
        doc = dict(NEW_DOC)
        return ("", doc, "untitled.txt", "text", *history_outputs(history, doc), None, views.EMPTY_VIEW, "")

    def open_file(path: str | None, request: gr.Request):
        if not path:
            raise _error("No file was uploaded.")
        h = mine(request)
        try:
            text = check_document(Path(path).read_bytes())
            name = Path(path).name
            language = language_for(name)
            rev = h.create_document(name, text, language)
        except REFUSALS as err:
            raise _fail(err) from None
        doc = {"id": rev.document_id, "revision": rev.id}
        return (text, doc, name, language, *history_outputs(h, doc), None, views.EMPTY_VIEW,
                f"Opened {escape(name)} ({language}).")

    def ensure_revision(h: History, text: str, doc: dict, name: str, language: str) -> dict:
        """The document as it reads now, stored: a new document, or a typed revision on its base."""
        if doc["id"] is None:
            rev = h.create_document(name or "untitled.txt", text, language)
        elif h.revision(doc["revision"]).text != text:
            rev = h.commit(doc["id"], text, doc["revision"], "typed")
        else:
            return doc
        return {"id": rev.document_id, "revision": rev.id}

    def save(text: str, doc: dict, name: str, language: str, request: gr.Request):
        h = mine(request)
        try:
            exports.file_name(name)  # a name no file system takes is refused before anything is recorded
            doc = ensure_revision(h, text, doc, name, language)
        except REFUSALS as err:
            raise _fail(err) from None
        saved = f"Saved revision #{doc['revision']}"
        try:
            path = exports.export(h, doc["id"], doc["revision"], name, demo.GRADIO_CACHE)
        except REFUSALS as err:  # the revision is recorded: the page follows it, only the download is missing
            return (gr.update(value=None, visible=False), doc, *history_outputs(h, doc),
                    f"{saved}, but the download could not be written: {escape(str(err))}")
        return gr.update(value=str(path), visible=True), doc, *history_outputs(h, doc), f"{saved}."

    # -- regeneration (streams the engine's real steps) ----------------------------------------------
    def regenerate(action: str, text: str, a16: Any, b16: Any, doc: dict, language: str, mode: str, n: Any,
                   constraint: str, heatmap: bool, *dial: Any):
        hide = gr.update(visible=False)
        try:
            text = page_document(text)
            a, b = selection(text, a16, b16)
            kind = None
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
            lengths = auto_lengths(model.codec, text[a:b], mode, score)
            # "auto": each tried length is one run of at most the longest one's cost; that one is checked.
            widest = dataclasses.replace(span, length=max(lengths)) if lengths else span
            canvas = build_canvas(model.codec, text, [widest], model.max_length)
            check_budget(settings, canvas, limits.budget)
        except (ValueError, EditorError) as err:
            raise _fail(err) from None
        note = ""
        if lengths:  # pick the length with quick unstreamed runs first, then stream the real run at it
            yield (views.EMPTY_VIEW, "<div class='sh-metrics'>choosing a length: trying "
                   f"{', '.join(map(str, lengths))} tokens…</div>",
                   None, hide, hide, "")
            try:
                length, tried = choose_length(model, text, span, settings, lengths, score)
                span = dataclasses.replace(span, length=length)
                canvas = build_canvas(model.codec, text, [span], model.max_length)
            except ValueError as err:
                raise _fail(err) from None
            except Exception as err:
                log.exception("the model failed choosing a length")
                raise _error(f"The model failed: {err}", "Model error") from None
            note = length_note(tried, length)
        run = Run(canvas, text, (a, b), language, doc["id"], doc["revision"], kind, settings)
        yield views.EMPTY_VIEW, "<div class='sh-metrics'>starting…</div>", run, hide, hide, note
        try:
            for step in engine.steps(canvas, settings):
                run.record(step)
                yield (views.step_html(step, canvas, 0, heatmap), views.metrics_html(step, canvas), run,
                       gr.update(), gr.update(), "")
        except Exception as err:  # a model failure: say so, the document is untouched
            log.exception("the model failed")
            raise _error(f"The model failed: {err}", "Model error") from None
        finally:
            _trim_heap()
        try:
            run.problems = check_candidates(run)
        except EditorError as err:  # the check is advice: a run is never lost to it
            run.problems = [f"could not check: {err}"] * len(run.last.texts)
        try:
            rank_candidates(run, score)
        except Exception:  # the ranking is advice too: unscored, in the loop's order
            log.exception("scoring the candidates failed")
            rank_candidates(run, None)
        choices = [(candidate_label(run, i), i) for i in run.order]
        last, best = run.last, run.order[0]
        yield (views.step_html(last, canvas, best, heatmap), views.metrics_html(last, canvas), run,
               _scrub(run), gr.update(choices=choices, value=best, visible=True),
               note + "Pick a candidate and press Accept, or Reject all. The document is unchanged until then.")

    def take_turn(request: gr.Request | None, run: Iterator[tuple]) -> Iterator[tuple]:
        """A run on the model when its turn comes (Turns: first come first served, limits.runs_per_user
        per login, or per page without one); meanwhile the metrics say how many runs are ahead."""
        name = getattr(request, "username", None)
        user = ("login", name) if name else ("page", getattr(request, "session_hash", None))

        def waiting(ahead: int) -> tuple:
            note = f"<div class='sh-metrics' data-state='waiting'>waiting for the model: {ahead} run(s) ahead</div>"
            return gr.update(), note, gr.update(), gr.update(), gr.update(), ""
        try:
            yield from in_turn(turns, user, run, waiting)
        except AccessError as err:
            raise _fail(err) from None

    def candidate_label(run: Run, i: int) -> str:
        s, e = run.new_span(i)
        piece = run.result(i)[s:e].replace("\n", "⏎")
        nll = run.scores[i] if i < len(run.scores) else None
        score = f"  · NLL {nll:.2f}" if nll is not None else ""  # the base model's, per token of the window
        mark = f"  ✗ does not parse: {run.problems[i]}" if run.problems[i] else ""
        return f"{i + 1}: {piece[:60]}{'…' if len(piece) > 60 else ''}{score}{mark}"

    def stopped(run: Run | None):
        if run is None or run.last is None:
            return "<div class='sh-metrics' data-state='stopped'><b>stopped</b> before the first step</div>", \
                gr.update()
        return (views.metrics_html(run.last, run.canvas, stopped=not run.last.done),
                _scrub(run))

    def show_step(k: Any, run: Run | None, candidate: Any, heatmap: bool):
        if run is None or not run.steps:
            return views.EMPTY_VIEW, ""
        step = run.steps[max(0, min(int(k or 1), len(run.steps)) - 1)]
        return views.step_html(step, run.canvas, int(candidate or 0), heatmap), views.metrics_html(step, run.canvas)

    def inspect_token(run: Run | None, k: Any, candidate: Any, evt: gr.SelectData):
        if run is None or not run.steps:
            return views.inspector_html(None, None, 0, 0)
        step = run.steps[max(0, min(int(k or len(run.steps)), len(run.steps)) - 1)]
        return views.inspector_html(step, run.canvas, int(candidate or 0), int(evt.index))

    # -- accept / reject --------------------------------------------------------------------------------
    def accept(text: str, run: Run | None, candidate: Any, doc: dict, name: str, language: str, branch: bool,
               request: gr.Request | None):
        h = mine(request)
        if run is None or run.last is None or not run.last.done:
            raise _error("Nothing to accept: regenerate first (a stopped run cannot be accepted).")
        i = int(candidate or 0)
        try:
            result = run.result(i)
            if text != run.base_text:  # the person typed meanwhile: carry the edit over, keep their text
                result = rebase_edit(run.base_text, result, text)
            if run.document is not None and run.document != doc["id"]:
                raise EditorError("This edit was made on another document; regenerate again.")
            base = {"id": doc["id"], "revision": run.base_revision or doc["revision"]}
            base = ensure_revision(h, text, base, name, language)
            regen = Regeneration([run.new_span(i)], model.label, dataclasses.asdict(run.settings),
                                 run.settings.seed, run.last.forwards, run.last.elapsed * 1000)
            rev = h.commit(base["id"], result, base["revision"], "regenerated", regeneration=regen, branch=branch)
        except StaleRevision as err:
            log.exception("stale accept")
            raise _error(f"The document changed since this edit started (revision {err.base_id}; the head is "
                           f"now {err.head_id}). Your text is unchanged. Use 'Accept as branch' to keep both.",
                         "Stale revision") from None
        except REFUSALS as err:
            raise _fail(err) from None
        doc = {"id": rev.document_id, "revision": rev.id}
        return (result, doc, *history_outputs(h, doc), None, gr.update(visible=False), gr.update(visible=False),
                f"Accepted candidate {i + 1} as revision #{rev.id}.")

    def accept_here(text: str, run: Run | None, candidate: Any, doc: dict, name: str, language: str,
                    request: gr.Request):
        return accept(text, run, candidate, doc, name, language, False, request)

    def accept_as_branch(text: str, run: Run | None, candidate: Any, doc: dict, name: str, language: str,
                         request: gr.Request):
        return accept(text, run, candidate, doc, name, language, True, request)

    def forget_session(request: gr.Request) -> None:
        """A closed tab's run goes now, not an hour later (gradio keeps a closed session's state that
        long in case it reconnects; a reload opens a new session anyway)."""
        if request.session_hash is not None:
            demo.state_holder.delete_state(request.session_hash)
            _trim_heap()

    def reject():
        return None, views.EMPTY_VIEW, gr.update(visible=False), gr.update(visible=False), \
            "Rejected all candidates; the document is unchanged."

    # -- history ----------------------------------------------------------------------------------------
    def show_diff(a: Any, b: Any, request: gr.Request):
        if a is None or b is None:
            raise _error("Choose two revisions to compare.")
        try:
            return views.diff_html(mine(request).diff(int(a), int(b)))
        except REFUSALS as err:
            raise _fail(err) from None

    def restore(b: Any, doc: dict, request: gr.Request):
        if b is None:
            raise _error("Choose the revision to restore (B).")
        h = mine(request)
        try:
            rev = h.restore(int(b))
        except REFUSALS as err:
            raise _fail(err) from None
        doc = {"id": rev.document_id, "revision": rev.id}
        return (rev.text, doc, *history_outputs(h, doc), f"Restored revision #{b} as #{rev.id}.")

    def label(b: Any, text: str, doc: dict, request: gr.Request):
        if b is None:
            raise _error("Choose the revision to label (B).")
        h = mine(request)
        try:
            h.label(int(b), text.strip() or None)
        except REFUSALS as err:
            raise _fail(err) from None
        return history_outputs(h, doc)

    # -- selection moves ---------------------------------------------------------------------------------
    def move(direction: str, text: str, a16: Any, b16: Any, language: str):
        try:
            a, b = selection(text, a16, b16)
            node = syntax_node(text, language, a, b) if a == b else move_node(text, language, a, b, direction)
        except (ValueError, EditorError) as err:
            raise _fail(err) from None
        if node is None:
            raise _error(f"Cannot {direction} further.", "Selection")
        return index_to_utf16(text, node.start), index_to_utf16(text, node.end), f"Selected: {escape(node.label)}"

    with gr.Blocks(title="Sharpen", delete_cache=(exports.EXPORT_AGE, exports.EXPORT_AGE)) as demo:
        gr.Markdown(f"## Sharpen\nModel: **{escape(model.label)}**. Select text, regenerate it, "
                    "watch each denoising step, accept a candidate.")
        doc = gr.State(dict(NEW_DOC))
        run = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    new = gr.Button("New document", size="sm")
                    upload = gr.UploadButton("Open file", size="sm", type="filepath")
                    save_btn = gr.Button("Save / export", size="sm")
                    name = gr.Textbox("untitled.txt", label="name", elem_id="doc-name", scale=2)
                    language = gr.Dropdown(supported(), value="text", label="language", elem_id="language")
                download = gr.File(label="download", visible=False, interactive=False)
                document = gr.Textbox(label="Document", lines=8, max_lines=30, elem_id="document",
                                      interactive=True)
                sel_start = gr.Number(0, precision=0, visible=False)
                sel_end = gr.Number(0, precision=0, visible=False)
                with gr.Row(equal_height=True):
                    go_sel = gr.Button("Regenerate selection", variant="primary", size="sm", min_width=90,
                                       elem_id="go-selection")
                    go_node = gr.Button("Regenerate syntax node", size="sm", min_width=90, elem_id="go-node")
                    expand = gr.Button("Expand", size="sm", elem_id="expand", min_width=50)
                    shrink = gr.Button("Shrink", size="sm", elem_id="shrink", min_width=50)
                    go_fill = gr.Button("Fill at cursor", size="sm", min_width=70, elem_id="go-fill")
                    stop = gr.Button("Stop", variant="stop", size="sm", elem_id="stop", min_width=50)
                message = gr.Markdown(elem_id="message")
                live = gr.HTML(views.EMPTY_VIEW, elem_id="live", js_on_load=JS["tokens"])
                metrics = gr.HTML("", elem_id="metrics")
                scrub = gr.Slider(1, 2, value=1, step=1, label="scrub steps", visible=False, elem_id="scrub")
                with gr.Row():
                    candidate = gr.Radio([], label="candidates", visible=False, elem_id="candidates", scale=3)
                    heatmap = gr.Checkbox(False, label="confidence heatmap", elem_id="heatmap")
                with gr.Row():
                    accept_btn = gr.Button("Accept", variant="primary", elem_id="accept")
                    branch_btn = gr.Button("Accept as branch", elem_id="accept-branch")
                    reject_btn = gr.Button("Reject all", elem_id="reject")
                inspector = gr.HTML(views.inspector_html(None, None, 0, 0), elem_id="inspector")
            with gr.Column(scale=2):
                with gr.Accordion("Span", open=True):
                    with gr.Row():
                        mode = gr.Radio(list(LENGTH_MODES), value="auto", label="length", scale=2,
                                        info="auto: the base model picks among 3-4 lengths, one quick run "
                                             "each before the streamed one (~5-7x keep's time); keep: the "
                                             "selection's count")
                        n_tokens = gr.Number(8, precision=0, minimum=1, label="N tokens", min_width=80)
                    constraint = gr.Textbox("", label="constraint (text the span must start with)",
                                            elem_id="constraint")
                with gr.Accordion("Dial", open=True):
                    preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="preset", info="fills the dial")
                    dial = controls(PRESETS[DEFAULT_PRESET])
                with gr.Accordion("History", open=True):
                    tree = gr.HTML(views.history_html([], {}), elem_id="history")
                    with gr.Row():
                        rev_a = gr.Dropdown([], label="A", elem_id="rev-a")
                        rev_b = gr.Dropdown([], label="B", elem_id="rev-b")
                    with gr.Row():
                        diff_btn = gr.Button("Diff A → B", size="sm", elem_id="diff")
                        restore_btn = gr.Button("Restore B", size="sm", elem_id="restore")
                    with gr.Row():
                        label_text = gr.Textbox(label="label for B", scale=2)
                        label_btn = gr.Button("Label B", size="sm")
                    diff_view = gr.HTML("", elem_id="diff-view")

        hist = [tree, rev_a, rev_b]
        new.click(new_document, None, [document, doc, name, language, *hist, run, live, message])
        upload.upload(open_file, upload, [document, doc, name, language, *hist, run, live, message])
        name.change(lambda n: language_for(n or ""), name, language)
        save_btn.click(save, [document, doc, name, language], [download, doc, *hist, message])

        inputs = [document, sel_start, sel_end, doc, language, mode, n_tokens, constraint, heatmap, *dial]
        outputs = [live, metrics, run, scrub, candidate, message]
        runs = []
        for button, action in ((go_sel, "selection"), (go_node, "node"), (go_fill, "fill")):
            def handler(request: gr.Request, *args, _action=action):
                yield from take_turn(request, regenerate(_action, *args))
            # Runs wait in Turns, not in Gradio's queue, so Turns can see (and cap) each user's runs.
            runs.append(button.click(handler, inputs, outputs, js=JS["read_selection"], concurrency_id="model",
                                     concurrency_limit=WAITING_RUNS, api_name=f"regenerate_{action}"))
        stop.click(stopped, run, [metrics, scrub], cancels=runs)
        preset.change(preset_values, preset, dial)

        view_inputs = [scrub, run, candidate, heatmap]
        # .input/.release fire on the person's moves only, not when a run updates these controls.
        for listener in (scrub.input, candidate.input, heatmap.input):
            listener(show_step, view_inputs, [live, metrics], trigger_mode="always_last")
        live.select(inspect_token, [run, scrub, candidate], inspector)

        accept_out = [document, doc, *hist, run, candidate, scrub, message]
        accept_in = [document, run, candidate, doc, name, language]
        accept_btn.click(accept_here, accept_in, accept_out, api_name="accept")
        branch_btn.click(accept_as_branch, accept_in, accept_out, api_name="accept_branch")
        reject_btn.click(reject, None, [run, live, candidate, scrub, message])
        demo.unload(forget_session)

        diff_btn.click(show_diff, [rev_a, rev_b], diff_view, api_name="diff")
        restore_btn.click(restore, [rev_b, doc], [document, doc, *hist, message], api_name="restore")
        label_btn.click(label, [rev_b, label_text, doc], hist)
        for button, direction in ((expand, "expand"), (shrink, "shrink")):
            button.click(lambda *a, _d=direction: move(_d, *a), [document, sel_start, sel_end, language],
                         [sel_start, sel_end, message], js=JS["read_selection"], api_name=direction
                         ).then(None, [sel_start, sel_end], [sel_start, sel_end], js=JS["set_selection"])
    return demo


def _scrub(run: Run) -> dict:
    """The step slider for a recorded run (a slider needs two distinct ends; steps past the last clamp)."""
    return gr.update(minimum=1, maximum=max(2, len(run.steps)), value=len(run.steps), visible=True)


def launch(demo: gr.Blocks, **kwargs: Any) -> gr.Blocks:
    """Launch with Sharpen's own CSS (static/), nothing fetched from elsewhere."""
    demo.launch(css_paths=[STATIC / "sharpen.css"], footer_links=[], run_history=False, **kwargs)
    return demo
