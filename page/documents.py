"""Handlers for documents and their history: new, open, save, the revision tree, diff, restore, labels.

Each takes the `Page` first (bound in demo.py), then the event's inputs in order; each returns
the event's outputs. A tab's document is a `Doc`.
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from editor.history import History
from editor.languages import language_for
from editor.text import check_document

from . import exports, views
from .document_editor import NO_SPAN, Document
from .errors import REFUSALS, error, fail
from .state import NEW_DOC, Doc, Page


def history_outputs(h: History, doc: Doc) -> tuple:
    """The history panel for `doc`: the tree, and the A / B revision pickers (A the first, B the last)."""
    revs = h.history(doc.id) if doc.id is not None else []
    children = h.tree(doc.id) if doc.id is not None else {}
    choices = [(views.revision_label(r), r.id) for r in revs]
    last = choices[-1][1] if choices else None
    first = choices[0][1] if choices else None
    return (views.history_html(revs, children, doc.revision), gr.update(choices=choices, value=first),
            gr.update(choices=choices, value=last))


def new_document(page: Page) -> tuple:
    doc = NEW_DOC
    return (_shown(""), doc, "untitled.txt", "text", *history_outputs(page.history, doc), None, views.EMPTY_VIEW,
            "")


def _shown(text: str) -> dict:
    """The editor's update for a document put in front of the person: its text, the cursor at the
    start, no run's span."""
    return gr.update(value=Document(text), live=NO_SPAN)


def open_file(page: Page, path: str | None, request: gr.Request) -> tuple:
    if not path:
        raise error("No file was uploaded.")
    h = page.mine(request)
    try:
        text = check_document(Path(path).read_bytes())
        name = Path(path).name
        language = language_for(name)
        rev = h.create_document(name, text, language)
    except REFUSALS as err:
        raise fail(err) from None
    doc = Doc(rev.document_id, rev.id)
    return (_shown(text), doc, name, language, *history_outputs(h, doc), None, views.EMPTY_VIEW,
            f"Opened {escape(name)} ({language}).")


def ensure_revision(h: History, text: str, doc: Doc, name: str, language: str) -> Doc:
    """The document as it reads now, stored: a new document, or a typed revision on its base."""
    if doc.id is None or doc.revision is None:
        rev = h.create_document(name or "untitled.txt", text, language)
    elif h.revision(doc.revision).text != text:
        rev = h.commit(doc.id, text, doc.revision, "typed")
    else:
        return doc
    return Doc(rev.document_id, rev.id)


def save(page: Page, document: Document, doc: Doc, name: str, language: str, request: gr.Request) -> tuple:
    h = page.mine(request)
    text = document.text
    try:
        exports.file_name(name)  # a name no file system takes is refused before anything is recorded
        doc = ensure_revision(h, text, doc, name, language)
    except REFUSALS as err:
        raise fail(err) from None
    assert doc.id is not None and doc.revision is not None
    saved = f"Saved revision #{doc.revision}"
    try:
        path = exports.export(h, doc.id, doc.revision, name, Path(get_upload_folder()))
    except REFUSALS as err:  # the revision is recorded: the page follows it, only the download is missing
        return (gr.update(value=None, visible=False), doc, *history_outputs(h, doc),
                f"{saved}, but the download could not be written: {escape(str(err))}")
    return gr.update(value=str(path), visible=True), doc, *history_outputs(h, doc), f"{saved}."


def show_diff(page: Page, a: Any, b: Any, request: gr.Request) -> str:
    if a is None or b is None:
        raise error("Choose two revisions to compare.")
    try:
        return views.diff_html(page.mine(request).diff(int(a), int(b)))
    except REFUSALS as err:
        raise fail(err) from None


def restore(page: Page, b: Any, doc: Doc, request: gr.Request) -> tuple:
    if b is None:
        raise error("Choose the revision to restore (B).")
    h = page.mine(request)
    try:
        rev = h.restore(int(b))
    except REFUSALS as err:
        raise fail(err) from None
    doc = Doc(rev.document_id, rev.id)
    return (gr.update(value=rev.text, live=NO_SPAN), doc, *history_outputs(h, doc),
            f"Restored revision #{b} as #{rev.id}.")


# -- undo / redo by revisions (the editor's Ctrl/Cmd+Z once its own undo history is empty) -------------
def _stands_for(h: History, revision_id: int) -> int:
    """The revision whose text `revision_id` holds: a restored revision stands for the one it restored."""
    rev = h.revision(revision_id)
    while rev.author == "restored" and rev.source_id is not None:
        rev = h.revision(rev.source_id)
    return rev.id


def undo_revision(page: Page, doc: Doc, redo: list[int], request: gr.Request) -> tuple:
    """One revision back: the parent of the revision the text stands for is restored as the new head
    (history is append-only), and the revision left is remembered for redo.
    Outputs: (editor, doc, history panel..., redo list, message)."""
    if doc.revision is None:
        raise error("Nothing to undo: this document has no revisions yet.", "Undo")
    h = page.mine(request)
    try:
        here = h.revision(_stands_for(h, doc.revision))
    except REFUSALS as err:
        raise fail(err) from None
    if here.parent_id is None:
        raise error(f"Nothing to undo: revision #{here.id} is the document's first.", "Undo")
    try:
        rev = h.restore(here.parent_id)
    except REFUSALS as err:
        raise fail(err) from None
    doc = Doc(rev.document_id, rev.id)
    return (gr.update(value=rev.text, live=NO_SPAN), doc, *history_outputs(h, doc), [*redo, here.id],
            f"Undid revision #{here.id}: the document reads as #{here.parent_id} again (saved as #{rev.id}).")


def redo_revision(page: Page, doc: Doc, redo: list[int], request: gr.Request) -> tuple:
    """Redo the last revision undone, if the document is still where that undo left it."""
    if not redo or doc.revision is None:
        raise error("Nothing to redo.", "Redo")
    h, target = page.mine(request), redo[-1]
    try:
        still_there = h.revision(target).parent_id == _stands_for(h, doc.revision)
    except REFUSALS as err:
        raise fail(err) from None
    if not still_there:  # the document was edited since that undo: its redo is gone
        raise error("Nothing to redo: the document changed since that undo.", "Redo")
    try:
        rev = h.restore(target)
    except REFUSALS as err:
        raise fail(err) from None
    doc = Doc(rev.document_id, rev.id)
    return (gr.update(value=rev.text, live=NO_SPAN), doc, *history_outputs(h, doc), redo[:-1],
            f"Redid revision #{target} (saved as #{rev.id}).")


def label(page: Page, b: Any, text: str, doc: Doc, request: gr.Request) -> tuple:
    if b is None:
        raise error("Choose the revision to label (B).")
    h = page.mine(request)
    try:
        h.label(int(b), text.strip() or None)
    except REFUSALS as err:
        raise fail(err) from None
    return history_outputs(h, doc)
