"""The page's components, one function per panel; each returns its panel's components for demo.py to wire."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from editor.languages import supported
from engine import DEFAULT_PRESET, PRESETS

from . import views
from .actions import LENGTH_MODES
from .dial import controls
from .document_editor import DocumentEditor
from .static import JS


@dataclass
class Editor:
    """The document and what acts on it: file buttons, the text, the selection, the action buttons."""

    new: gr.Button
    upload: gr.UploadButton
    save: gr.Button
    name: gr.Textbox
    language: gr.Dropdown
    download: gr.File
    document: DocumentEditor
    go_selection: gr.Button
    go_node: gr.Button
    expand: gr.Button
    shrink: gr.Button
    go_fill: gr.Button
    stop: gr.Button
    message: gr.Markdown


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
    inspector: gr.HTML


@dataclass
class Dial:
    """How a span is regenerated: its length and constraint, the sampler preset and every setting."""

    mode: gr.Radio
    n_tokens: gr.Number
    constraint: gr.Textbox
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
        return [self.tree, self.rev_a, self.rev_b]


def editor() -> Editor:
    with gr.Row():
        new = gr.Button("New document", size="sm")
        upload = gr.UploadButton("Open file", size="sm", type="filepath")
        save = gr.Button("Save / export", size="sm")
        name = gr.Textbox("untitled.txt", label="name", elem_id="doc-name", scale=2)
        language = gr.Dropdown(supported(), value="text", label="language", elem_id="language")
    download = gr.File(label="download", visible=False, interactive=False)
    document = DocumentEditor("", language="text", label="Document", elem_id="document")
    with gr.Row(equal_height=True):
        go_selection = gr.Button("Regenerate selection", variant="primary", size="sm", min_width=90,
                                 elem_id="go-selection")
        go_node = gr.Button("Regenerate syntax node", size="sm", min_width=90, elem_id="go-node")
        expand = gr.Button("Expand", size="sm", elem_id="expand", min_width=50)
        shrink = gr.Button("Shrink", size="sm", elem_id="shrink", min_width=50)
        go_fill = gr.Button("Fill at cursor", size="sm", min_width=70, elem_id="go-fill")
        stop = gr.Button("Stop", variant="stop", size="sm", elem_id="stop", min_width=50)
    message = gr.Markdown(elem_id="message")
    return Editor(new, upload, save, name, language, download, document, go_selection,
                  go_node, expand, shrink, go_fill, stop, message)


def run_view() -> RunView:
    live = gr.HTML(views.EMPTY_VIEW, elem_id="live", js_on_load=JS["tokens"])
    metrics = gr.HTML("", elem_id="metrics")
    scrub = gr.Slider(1, 2, value=1, step=1, label="scrub steps", visible=False, elem_id="scrub")
    with gr.Row():
        candidate = gr.Radio([], label="candidates", visible=False, elem_id="candidates", scale=3)
        heatmap = gr.Checkbox(False, label="confidence heatmap", elem_id="heatmap")
    with gr.Row():
        accept = gr.Button("Accept", variant="primary", elem_id="accept")
        branch = gr.Button("Accept as branch", elem_id="accept-branch")
        reject = gr.Button("Reject all", elem_id="reject")
    inspector = gr.HTML(views.inspector_html(None, None, 0, 0), elem_id="inspector")
    return RunView(live, metrics, scrub, candidate, heatmap, accept, branch, reject, inspector)


def dial() -> Dial:
    with gr.Accordion("Span", open=True):
        with gr.Row():
            mode = gr.Radio(list(LENGTH_MODES), value="auto", label="length", scale=2,
                            info="auto: the base model picks among 3-4 lengths, one quick run each before the "
                                 "streamed one (~5-7x keep's time); keep: the selection's count")
            n_tokens = gr.Number(8, precision=0, minimum=1, label="N tokens", min_width=80)
        constraint = gr.Textbox("", label="constraint (text the span must start with)", elem_id="constraint")
    with gr.Accordion("Dial", open=True):
        preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="preset", info="fills the dial")
        knobs = controls(PRESETS[DEFAULT_PRESET])
    return Dial(mode, n_tokens, constraint, preset, knobs)


def history_panel() -> HistoryPanel:
    with gr.Accordion("History", open=True):
        tree = gr.HTML(views.history_html([], {}), elem_id="history")
        with gr.Row():
            rev_a = gr.Dropdown([], label="A", elem_id="rev-a")
            rev_b = gr.Dropdown([], label="B", elem_id="rev-b")
        with gr.Row():
            diff = gr.Button("Diff A → B", size="sm", elem_id="diff")
            restore = gr.Button("Restore B", size="sm", elem_id="restore")
        with gr.Row():
            label_text = gr.Textbox(label="label for B", scale=2)
            label = gr.Button("Label B", size="sm")
        diff_view = gr.HTML("", elem_id="diff-view")
    return HistoryPanel(tree, rev_a, rev_b, diff, restore, label_text, label, diff_view)
