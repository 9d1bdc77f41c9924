"""The page's document: a CodeMirror 6 editor as a Gradio custom component (frontend in ./frontend).

Its value is the text and the selection. The browser counts UTF-16 code units, Python counts code
points: `preprocess` and `postprocess` convert at this edge, so handlers only see code points.
A second property, `live`, carries one denoising step of a run's span (page/live.py builds it);
the editor draws it in place as decorations. A third, `shown`, names the document the page showed
(`document_key`); the editor sends it back with "typed", so a draft is filed under the document its
text was typed in, even when the page has switched documents before the event is sent.
Keyboard shortcuts arrive as the events in `EVENTS`.
The built frontend ships in ./templates (rebuild: `make frontend`).
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from gradio.components.base import Component
from gradio.exceptions import Error

from editor.text import EditorError, index_to_utf16, utf16_to_index

# What the editor's keyboard shortcuts (and the span's toolbar) ask the page to do; one Gradio event each.
SHORTCUT_EVENTS = (
    "regenerate",        # Ctrl/Cmd+Enter: regenerate the selection (fill at the cursor without one)
    "regenerate_node",   # Ctrl/Cmd+Shift+Enter: regenerate the syntax node around the selection
    "expand", "shrink",  # Alt+Shift+Right / Left: grow or shrink the selection by syntax nodes
    "stop",              # Esc while a run streams
    "accept", "reject",  # Tab / Esc on a finished run
    "accept_anyway", "cancel_accept",  # Tab / Esc when the page asks before accepting code that does not parse
    "next_candidate", "previous_candidate",  # Alt+] / Alt+[
    "scrub",             # the span toolbar's step slider (event data: {"step": k}, 1-based)
    "undo_revision", "redo_revision",  # Ctrl/Cmd+Z / Shift+Z once the editor has nothing of its own to undo
    "select",            # a click on one of the span's tokens (gr.SelectData: index = its canvas position)
    "save",              # Ctrl/Cmd+S: the text as it reads becomes a revision
    "typed",             # a pause in the person's typing: the page keeps the text as an unsaved draft
                         # (event data: {"shown": the `shown` key the text was typed under})
    "kept_typing",       # the person typed before the page's first document arrived: their text stayed
)


NO_SPAN: dict = {}  # the `live` value that shows no run


def document_key(document_id: int | None) -> str:
    """The `shown` key of a stored document, or of the tab's new (unsaved) one."""
    return "new" if document_id is None else str(document_id)


@dataclass(frozen=True)
class EditorValue:
    """The document as a handler sees it: its text and the selection [start, end) in code points;
    with several selections (Ctrl/Cmd+click, Ctrl/Cmd+D, Alt+drag), `ranges` holds each non-empty one
    [start, end), in document order."""

    text: str
    start: int = 0
    end: int = 0
    ranges: tuple[tuple[int, int], ...] = ()

    @property
    def selected(self) -> str:
        return self.text[self.start:self.end]


def _ranges(text: str, raw: Any) -> tuple[tuple[int, int], ...]:
    """Every selection [from, to) in UTF-16 as code points, the empty ones (cursors) left out, in order."""
    if not isinstance(raw, (list, tuple)) or not all(isinstance(r, (list, tuple)) and len(r) == 2 for r in raw):
        raise EditorError(f"ranges must be a list of [from, to], got {raw!r}")
    out = {(utf16_to_index(text, _offset(a)), utf16_to_index(text, _offset(b))) for a, b in raw}
    return tuple(sorted((min(a, b), max(a, b)) for a, b in out if a != b))


def _offset(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditorError(f"an offset must be an integer, not {value!r}")
    return value


class DocumentEditor(Component):
    """CodeMirror 6 with syntax highlighting for editor/languages.py's languages, line numbers,
    search, its own undo, soft wrap for prose, and a run's span drawn in place step by step."""

    EVENTS = list(SHORTCUT_EVENTS)

    def __init__(self, value: str | EditorValue | None = "", *, language: str = "text",
                 live: dict | None = None, shown: str = "new", label: str | None = None, show_label: bool | None = None,
                 interactive: bool | None = True, visible: bool = True, elem_id: str | None = None,
                 elem_classes: list[str] | str | None = None, scale: int | None = None,
                 min_width: int = 160, render: bool = True, **kwargs: Any):
        """`language` is a name from editor.languages (unknown names show as plain text); `live` is
        page/live.py's step of a run's span; NO_SPAN (or None) when no run is shown (Gradio drops a
        None from a prop update, so updates clear it with NO_SPAN); `shown` is the document_key of
        the document in the editor, set by each handler that shows another one."""
        self.language = language
        self.live = live
        self.shown = shown
        super().__init__(value=value, label=label, show_label=show_label, interactive=interactive,
                         visible=visible, elem_id=elem_id, elem_classes=elem_classes, scale=scale,
                         min_width=min_width, render=render, **kwargs)

    def preprocess(self, payload: dict | str | None) -> EditorValue:
        """{"text", "selection": [anchor, head] in UTF-16} -> EditorValue in code points, ordered.
        An API client may send the text alone: the cursor is then at its start."""
        if payload is None or isinstance(payload, str):
            return EditorValue(payload or "")
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            raise Error(f"There is no document: the editor sent {type(text).__name__}, not text.", title="Document")
        selection = payload.get("selection") or (0, 0)
        if not (isinstance(selection, (list, tuple)) and len(selection) == 2):
            raise Error(escape(f"The selection is wrong: expected [anchor, head], got {selection!r}"),
                        title="Selection")
        a16, b16 = selection
        try:
            a, b = utf16_to_index(text, _offset(a16)), utf16_to_index(text, _offset(b16))
            ranges = _ranges(text, payload.get("ranges") or ())
        except EditorError as err:  # shown in the page as is, not as a server error
            raise Error(escape(f"The selection is wrong: {err}"), title="Selection") from None
        return EditorValue(text, min(a, b), max(a, b), ranges)

    def postprocess(self, value: str | EditorValue | None) -> dict | None:
        """A text (the selection stays where it is, clamped) or an EditorValue (its selection is set)."""
        if value is None:
            return None
        if isinstance(value, str):
            return {"text": value, "selection": None}
        return {"text": value.text,
                "selection": [index_to_utf16(value.text, value.start), index_to_utf16(value.text, value.end)]}

    def api_info(self) -> dict[str, Any]:
        return {"type": "object", "properties": {
            "text": {"type": "string"},
            "selection": {"type": "array", "items": {"type": "integer"},
                          "description": "[anchor, head] in UTF-16 code units"},
            "ranges": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}},
                       "description": "optional: every selection [from, to] in UTF-16 (several: one run)"}}}

    def example_payload(self) -> Any:
        return {"text": "def area(w, h):\n    return w * h\n", "selection": [20, 32]}

    def example_value(self) -> Any:
        return EditorValue("def area(w, h):\n    return w * h\n", 20, 32)

