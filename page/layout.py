"""The page's components, one function per panel; each returns its panel's components for demo.py to wire."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from editor.languages import supported
from engine import DEFAULT_PRESET, PRESETS
from engine.limits import MAX_SPAN_TOKENS

from . import views
from .actions import LENGTH_MODES
from .dial import SHORT_FORM, checked, controls
from .document_editor import DocumentEditor
from .static import JS

SIDE_TABS = ("run", "history")


@dataclass
class Documents:
    """The documents list (a sidebar): open one, make or upload one, archive and unarchive."""

    listed: gr.Radio
    new: gr.Button
    upload: gr.UploadButton
    archive: gr.Button
    archived: gr.Radio
    unarchive: gr.Button

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What `documents.documents_outputs` fills."""
        return [self.listed, self.archived, self.archive, self.unarchive]


@dataclass
class Topbar:
    """Across the top: the page's title, the document's name and language, Rename, the unsaved mark,
    Save (a revision) and Download (the file)."""

    name: gr.Textbox
    language: gr.Dropdown
    rename: gr.Button
    unsaved: gr.HTML
    save: gr.Button
    download: gr.Button
    title: gr.HTML | None = None  # the model's name: the picker (page/models.py) changes it


@dataclass
class Editor:
    """The document and what acts on it: the text, the selection, the actions, messages, the download."""

    download: gr.File
    document: DocumentEditor
    go_selection: gr.Button
    go_node: gr.Button
    expand: gr.Button
    shrink: gr.Button
    go_fill: gr.Button
    go_holes: gr.Button      # a template's holes (⟨⟩), all filled in one run
    stop: gr.Button
    message: gr.Markdown


@dataclass
class InstructionBox:
    """Ctrl/Cmd+K over the selection (static/instruct.js): what the selection should become; Enter runs
    an instruction edit, Esc closes it."""

    box: gr.Column
    text: gr.Textbox


@dataclass
class RunView:
    """A run as it streams and once done: the live view, metrics, steps, candidates, accept / reject."""

    live: gr.HTML
    metrics: gr.HTML
    scrub: gr.Slider
    candidate: gr.Radio
    heatmap: gr.Checkbox
    accept: gr.Button
    branch: gr.Button
    reject: gr.Button
    last: gr.Button           # the candidates of the run a new one replaced (runs.back_to_aside)
    confirm: gr.Row
    confirm_text: gr.Markdown
    accept_anyway: gr.Button
    cancel: gr.Button
    inspector: gr.HTML


@dataclass
class Dial:
    """How a span is regenerated: its length and constraint, the sampler preset and every setting."""

    mode: gr.Radio
    n_tokens: gr.Number
    constraint: gr.Textbox   # the constraint row: the new span starts with,
    ends_with: gr.Textbox    # ends with,
    include: gr.Textbox      # must include (the model picks the place)
    preset: gr.Dropdown
    controls: list[gr.components.Component]


@dataclass
class HistoryPanel:
    """The revision tree, two revisions to compare (A, B), restore and labels."""

    tree: gr.HTML
    rev_a: gr.Dropdown
    rev_b: gr.Dropdown
    diff: gr.Button
    restore: gr.Button
    label_text: gr.Textbox
    label: gr.Button
    diff_view: gr.HTML

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What `documents.history_outputs` fills."""
        return [self.tree, self.rev_a, self.rev_b, self.diff, self.restore, self.label]


def documents_sidebar() -> Documents:
    with gr.Sidebar(label="Documents", open=True, width=250, elem_id="documents-bar"):
        gr.Markdown("### Documents")
        with gr.Row():
            new = gr.Button("New", size="sm", elem_id="new-document", min_width=60)
            upload = gr.UploadButton("Open file", size="sm", type="filepath", elem_id="open-file", min_width=80)
        listed = gr.Radio([], label="open a document", elem_id="documents")
        archive = gr.Button("Archive this document", size="sm", elem_id="archive", interactive=False)
        with gr.Accordion("Archived", open=False):
            archived = gr.Radio([], show_label=False, elem_id="archived")
            unarchive = gr.Button("Unarchive", size="sm", elem_id="unarchive", interactive=False)
    return Documents(listed, new, upload, archive, archived, unarchive)


def topbar(model_label: str, demonstration: bool = False, attention_block: int | None = None) -> Topbar:
    with gr.Row(equal_height=True, elem_id="topbar"):
        title = gr.HTML(views.title_html(model_label, demonstration, attention_block), elem_id="title",
                        padding=False)
        name = gr.Textbox("untitled.txt", show_label=False, container=False, elem_id="doc-name", scale=3,
                          placeholder="document name")
        language = gr.Dropdown(supported(), value="text", show_label=False, container=False, elem_id="language",
                               min_width=110, scale=1)
        rename = gr.Button("Rename", size="sm", elem_id="rename", min_width=70, interactive=False, scale=0)
        unsaved = gr.HTML("", elem_id="unsaved", padding=False, min_width=0)
        save = gr.Button("Save", size="sm", elem_id="save", min_width=60, scale=0)
        download = gr.Button("Download", size="sm", elem_id="download-button", min_width=86, scale=0)
    return Topbar(name, language, rename, unsaved, save, download, title)


def editor() -> Editor:
    with gr.Row(equal_height=True, elem_id="actions"):
        go_selection = gr.Button("Regenerate selection", variant="primary", size="sm", min_width=90,
                                 elem_id="go-selection")
        go_node = gr.Button("Regenerate syntax node", size="sm", min_width=90, elem_id="go-node")
        expand = gr.Button("Expand", size="sm", elem_id="expand", min_width=50)
        shrink = gr.Button("Shrink", size="sm", elem_id="shrink", min_width=50)
        go_fill = gr.Button("Fill at cursor", size="sm", min_width=70, elem_id="go-fill")
        go_holes = gr.Button("Fill holes", size="sm", min_width=60, elem_id="go-holes")
        stop = gr.Button("Stop", variant="stop", size="sm", elem_id="stop", min_width=50, interactive=False)
    document = DocumentEditor("", language="text", show_label=False, elem_id="document")
    message = gr.Markdown(elem_id="message")
    download = gr.File(label="download", visible="hidden", interactive=False, elem_id="download")
    return Editor(download, document, go_selection, go_node, expand, shrink, go_fill, go_holes, stop, message)


def instruction_box() -> InstructionBox:
    """Hidden until Ctrl/Cmd+K; static/instruct.js places it over the selection."""
    with gr.Column(elem_id="instruct-box") as box:
        text = gr.Textbox(show_label=False, lines=1, max_lines=1, elem_id="instruction", container=False,
                          placeholder="What should the selection become? (Enter runs, Esc closes)")
        gr.Markdown("instruction edit · guidance: Dial → Advanced", elem_id="instruct-note")
    return InstructionBox(box, text)


RANKED = "best first: code that still parses, then what reads most naturally with the text around it"
UNRANKED = "code that still parses first, then in the model's own order (no base model here reads them)"


def run_view(ranked: bool = True) -> RunView:
    """What a run offers, in the order a person uses it, so all of it fits beside the editor at
    1280x800: the state, the buttons, the candidates, the token inspector, then the step view."""
    metrics = gr.HTML("", elem_id="metrics")
    with gr.Row(equal_height=True, elem_id="run-buttons"):
        accept = gr.Button("Accept", variant="primary", size="sm", elem_id="accept", interactive=False)
        branch = gr.Button("Accept as branch", size="sm", elem_id="accept-branch", interactive=False)
        reject = gr.Button("Reject all", size="sm", elem_id="reject", interactive=False)
        last = gr.Button("Last run", size="sm", elem_id="last-candidates", scale=0, min_width=70)
        heatmap = gr.Checkbox(False, label="heatmap", elem_id="heatmap", min_width=90, container=False)
    with gr.Row(visible=False, elem_id="confirm") as confirm:
        confirm_text = gr.Markdown(elem_id="confirm-text")
        accept_anyway = gr.Button("Accept anyway", variant="stop", size="sm", elem_id="accept-anyway")
        cancel = gr.Button("Cancel", size="sm", elem_id="cancel-accept")
    candidate = gr.Radio([], label="candidates", visible=False, elem_id="candidates",
                         info=RANKED if ranked else UNRANKED)
    inspector = gr.HTML(views.inspector_html(None, None, 0, 0), elem_id="inspector")
    scrub = gr.Slider(1, 2, value=1, step=1, label="scrub steps", visible=False, elem_id="scrub")
    live = gr.HTML(views.EMPTY_VIEW, elem_id="live", js_on_load=JS["tokens"])
    return RunView(live, metrics, scrub, candidate, heatmap, accept, branch, reject, last, confirm, confirm_text,
                   accept_anyway, cancel, inspector)


def dial_drawer(start: str = DEFAULT_PRESET, top: tuple[gr.components.Component, ...] = ()) -> Dial:
    """The Dial, filled from the preset `start` (engine.guide.default_preset: the model's own): the short
    form first (speed <-> quality, candidates, length), every other setting under Advanced. `top`:
    components made unrendered that go above them (the model picker)."""
    knobs = controls(PRESETS[start])
    named = dict(zip((k.elem_id for k in knobs), knobs, strict=True))
    with gr.Sidebar(label="Dial", open=False, position="right", width=340, elem_id="dial"):
        for component in top:
            component.render()
        preset = gr.Dropdown(list(PRESETS), value=start, label="speed ↔ quality", elem_id="preset",
                             info="how the model writes: guided (its base language model helps, left to right), "
                                  "fast (several tokens at a time), quality (one at a time: slower, fewer repeated "
                                  "words). Sets every setting under Advanced.")
        for name in SHORT_FORM:
            named.pop("dial-" + name.replace("_", "-")).render()
        mode = gr.Radio(list(LENGTH_MODES), value="auto", label="length", elem_id="length-mode",
                        info="auto: tries a few lengths and keeps the best fit (slower); keep: as long as the "
                             "selection; N tokens: the number below")
        n_tokens = checked(gr.Number(8, precision=0, minimum=1, maximum=MAX_SPAN_TOKENS, label="N tokens",
                                      elem_id="n-tokens"))
        with gr.Accordion("Pinned words", open=False, elem_id="dial-pins"):
            with gr.Row(elem_id="pins"):
                constraint = gr.Textbox("", label="starts with", elem_id="constraint", min_width=90)
                ends_with = gr.Textbox("", label="ends with", elem_id="ends-with", min_width=90)
                include = gr.Textbox("", label="must include", elem_id="include", min_width=90)
            gr.Markdown("Text the new span must start with, end with, or include (the model tries every "
                        "place and keeps the likeliest). With several selections, the first span.",
                        elem_id="pins-note")
        with gr.Accordion("Advanced", open=False, elem_id="dial-advanced"):
            for rest in named.values():
                rest.render()
    return Dial(mode, n_tokens, constraint, ends_with, include, preset, knobs)


def history_panel() -> HistoryPanel:
    tree = gr.HTML(views.history_html([], {}), elem_id="history", js_on_load=JS["history"])
    # one above the other: a revision's line ("#12 undo of #11 [label] 14:02:11") is not cut under the arrow
    rev_a = gr.Dropdown([], label="A (compare from)", elem_id="rev-a")
    rev_b = gr.Dropdown([], label="B (compare to, restore, label)", elem_id="rev-b")
    with gr.Row(equal_height=True):
        diff = gr.Button("Diff A → B", size="sm", elem_id="diff", interactive=False)
        restore = gr.Button("Restore B", size="sm", elem_id="restore", interactive=False)
    with gr.Row(equal_height=True):
        label_text = gr.Textbox(show_label=False, placeholder="label for B", container=False, scale=2,
                                elem_id="label-text")
        label = gr.Button("Label B", size="sm", elem_id="label", interactive=False)
    diff_view = gr.HTML("", elem_id="diff-view")
    return HistoryPanel(tree, rev_a, rev_b, diff, restore, label_text, label, diff_view)


def side_panel(ranked: bool = True) -> tuple[gr.Tabs, RunView, HistoryPanel]:
    """Beside the editor: the run and the history, one tab each (`SIDE_TABS`); `ranked`: the page
    scores candidates (a model with a base LM here), which the candidate list says."""
    with gr.Tabs(elem_id="side-tabs") as tabs:
        with gr.Tab("Run", id=SIDE_TABS[0], elem_id="run-tab"):
            run = run_view(ranked)
        with gr.Tab("History", id=SIDE_TABS[1], elem_id="history-tab"):
            history = history_panel()
    return tabs, run, history
