"""Handlers for documents and their history: the documents list (new, open, upload, rename, archive,
reopen on load), save, and the history panel (diff, restore, labels, picking revisions).

Each takes the `Page` first (bound in demo.py), then the event's inputs in order; each returns
the event's outputs (outputs.py). A tab's document is a `Doc`.
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
from .document_editor import NO_SPAN, EditorValue, document_key
from .errors import REFUSALS, error, fail
from .outputs import KEEP, cleared_run, document_outputs, documents_outputs, history_outputs, unsaved_marker
from .state import NEW_DOC, Doc, Page


def _shown(h: History, doc: Doc, text: str, name: str, language: str, message: str, unsaved: bool = False) -> tuple:
    """A document shown afresh: its text (the cursor at the start, no run's span in the editor) and
    history, no run left from before, and a message; `unsaved`: the text is a draft, not a revision."""
    editor = gr.update(value=EditorValue(text), live=NO_SPAN, shown=document_key(doc.id))
    return (editor, *document_outputs(h, doc, name, language, unsaved), *cleared_run(), message)


def _at_head(h: History, document_id: int, message: str) -> tuple:
    head = h.head(document_id)
    d = h.document(document_id)
    return _shown(h, Doc(d.id, head.id), head.text, d.name, d.language, message)


def keep_typing(h: History, text: str, doc: Doc, name: str, language: str) -> str:
    """Typing the tab has not stored yet, stored before the tab shows another document, so switching
    loses nothing: a typed revision (a branch if the head moved meanwhile), or a new document.
    Returns a note for the message ("" when there was nothing to keep)."""
    if not text or (doc.revision is not None and h.revision(doc.revision).text == text):
        return ""
    if doc.id is None or doc.revision is None:
        h.create_document(name or "untitled.txt", text, language)
        h.drop_draft(None)
        return f"Your text was kept as {escape(name or 'untitled.txt')}. "
    moved = h.document(doc.id).head_id != doc.revision
    rev = h.commit(doc.id, text, doc.revision, "typed", branch=moved)
    return f"Your typing was kept as revision {h.number(rev.id)}{' (a branch)' if moved else ''}. "


def new_document(page: Page, document: EditorValue, doc: Doc, name: str, language: str, request: gr.Request) -> tuple:
    h = page.mine(request)
    try:
        kept = keep_typing(h, document.text, doc, name, language)
    except REFUSALS as err:
        raise fail(err) from None
    return _shown(h, NEW_DOC, "", "untitled.txt", "text", kept)


def reopen(page: Page, request: gr.Request) -> tuple:
    """On load: the document this user opened last, at its head, or with the typing kept as its draft
    (a new document's draft, when it is newer than the last one opened; none: a new document)."""
    h = page.mine(request)
    try:
        last, new = h.last_opened(), h.draft(None)
        if new is not None and (last is None or new.updated_at > (last.opened_at or last.created_at)):
            return _shown(h, NEW_DOC, new.text, new.name, new.language, UNSAVED_BACK, unsaved=True)
        if last is None:
            return _shown(h, NEW_DOC, "", "untitled.txt", "text", "")
        draft = h.draft(last.id)
        if draft is not None and draft.base_id is not None:
            return _shown(h, Doc(last.id, draft.base_id), draft.text, last.name, last.language,
                          f"Reopened {escape(last.name)}. {UNSAVED_BACK}", unsaved=True)
        return _at_head(h, last.id, f"Reopened {escape(last.name)} at its latest revision.")
    except REFUSALS as err:
        raise fail(err) from None


UNSAVED_BACK = "Your unsaved typing is back; it is not a revision yet (Ctrl+S saves it)."


def keep_draft(page: Page, document: EditorValue, doc: Doc, name: str, language: str, request: gr.Request,
               evt: gr.EventData) -> Any:
    """A pause in typing: the text kept as the document's draft, so a reload brings it back.
    Output: the unsaved marker. Text typed in another document than the tab's now (the event sent
    after an open or a new document had answered) is no draft: that handler stored it already."""
    typed_in = (getattr(evt, "_data", None) or {}).get("shown")
    if typed_in is not None and typed_in != document_key(doc.id):
        return KEEP
    h = page.mine(request)
    try:
        draft = h.keep_draft(doc.id, doc.revision, document.text, name or "untitled.txt", language)
    except REFUSALS as err:
        raise fail(err) from None
    return unsaved_marker(draft is not None)


def kept_typing(page: Page, document: EditorValue, doc: Doc, name: str, request: gr.Request) -> tuple:
    """The person typed before the page's reopened document arrived: the editor kept their text, and it
    becomes a new document (a draft until saved); the reopened one stays in the list.
    Outputs: those of a document shown, the editor's text left as typed."""
    h = page.mine(request)
    try:
        h.keep_draft(None, None, document.text, "untitled.txt", "text")
    except REFUSALS as err:
        raise fail(err) from None
    there = f" {escape(name)} is in the Documents list." if doc.stored else ""
    shown = _shown(h, NEW_DOC, document.text, "untitled.txt", "text",
                   f"Kept what you typed as a new document (not saved yet).{there}", unsaved=True)
    return gr.update(shown=document_key(None)), *shown[1:]


def open_document(page: Page, document_id: Any, document: EditorValue, doc: Doc, name: str, language: str,
                  request: gr.Request) -> tuple:
    """A document chosen in the list, at its head (the tab's typing kept first)."""
    if document_id is None:
        raise error("Choose a document to open.")
    h = page.mine(request)
    try:
        kept = keep_typing(h, document.text, doc, name, language)
        d = h.mark_opened(int(document_id))
        return _at_head(h, d.id, f"{kept}Opened {escape(d.name)}.")
    except REFUSALS as err:
        raise fail(err) from None


def open_file(page: Page, path: str | None, document: EditorValue, doc: Doc, name: str, language: str,
              request: gr.Request) -> tuple:
    """An uploaded file as a new document (the tab's typing kept first)."""
    if not path:
        raise error("No file was uploaded.")
    h = page.mine(request)
    try:
        content = check_document(Path(path).read_bytes())
        kept = keep_typing(h, document.text, doc, name, language)
        file_name, file_language = Path(path).name, language_for(Path(path).name)
        rev = h.create_document(file_name, content, file_language)
    except REFUSALS as err:
        raise fail(err) from None
    return _shown(h, Doc(rev.document_id, rev.id), content, file_name, file_language,
                  f"{kept}Opened {escape(file_name)} ({file_language}).")


def rename(page: Page, name: str, doc: Doc, request: gr.Request) -> tuple:
    """The stored document gets the name in the name box; its revisions are untouched."""
    if doc.id is None:
        raise error("Save the document first: a new document takes its name when it is saved.")
    h = page.mine(request)
    try:
        d = h.rename(doc.id, name.strip())
    except REFUSALS as err:
        raise fail(err) from None
    return (*documents_outputs(h, doc), f"Renamed to {escape(d.name)}.")


def archive(page: Page, doc: Doc, request: gr.Request) -> tuple:
    """Take the document out of the list (nothing is deleted) and open the one used last before it."""
    if doc.id is None:
        raise error("This document is not stored: there is nothing to archive.")
    h = page.mine(request)
    try:
        gone = h.archive(doc.id)
        last = h.last_opened()
        message = f"Archived {escape(gone.name)}; the Archived list brings it back."
        return _at_head(h, last.id, message) if last else _shown(h, NEW_DOC, "", "untitled.txt", "text", message)
    except REFUSALS as err:
        raise fail(err) from None


def unarchive(page: Page, document_id: Any, doc: Doc, request: gr.Request) -> tuple:
    if document_id is None:
        raise error("Choose an archived document first.")
    h = page.mine(request)
    try:
        d = h.archive(int(document_id), archived=False)
    except REFUSALS as err:
        raise fail(err) from None
    return (*documents_outputs(h, doc), f"{escape(d.name)} is back in the list.")


def ensure_revision(h: History, text: str, doc: Doc, name: str, language: str, branch: bool = False) -> Doc:
    """The document as it reads now, stored: a new document, or a typed revision on its base
    (`branch`: as a branch if a newer revision was saved meanwhile, in another tab; else StaleRevision)."""
    if doc.id is None or doc.revision is None:
        rev = h.create_document(name or "untitled.txt", text, language)
        h.drop_draft(None)
    elif h.revision(doc.revision).text != text:
        moved = branch and h.document(doc.id).head_id != doc.revision
        rev = h.commit(doc.id, text, doc.revision, "typed", branch=moved)
    else:
        return doc
    return Doc(rev.document_id, rev.id)


def save(page: Page, document: EditorValue, doc: Doc, name: str, language: str, request: gr.Request) -> tuple:
    """Ctrl+S or Save: record the typed text (a new document, or a typed revision).
    Outputs: the editor's `shown` key, what follows the document (document_outputs), the message."""
    h, doc, saved = _saved(page, document, doc, name, language, request)
    return gr.update(shown=document_key(doc.id)), *document_outputs(h, doc, name, language), f"{saved}."


def download(page: Page, document: EditorValue, doc: Doc, name: str, language: str, request: gr.Request) -> tuple:
    """Download: save, then hand the browser the file (static/download.js clicks its link).
    Outputs: the file, the editor's `shown` key, what follows the document, the message."""
    h, doc, saved = _saved(page, document, doc, name, language, request)
    assert doc.id is not None and doc.revision is not None
    shown = (gr.update(shown=document_key(doc.id)), *document_outputs(h, doc, name, language))
    try:
        path = exports.export(h, doc.id, doc.revision, name, Path(get_upload_folder()))
    except REFUSALS as err:  # the revision is recorded: the page follows it, only the download is missing
        return None, *shown, f"{saved}, but the download could not be written: {escape(str(err))}"
    return str(path), *shown, f"{saved}; downloading {escape(path.name)}."


def _saved(page: Page, document: EditorValue, doc: Doc, name: str, language: str,
           request: gr.Request) -> tuple[History, Doc, str]:
    """The text as it reads, stored: the history, the tab's Doc and what to say."""
    h, text = page.mine(request), document.text
    try:
        exports.file_name(name)  # a name no file system takes is refused before anything is recorded
        before = doc
        head = h.document(doc.id).head_id if doc.id is not None else None
        doc = ensure_revision(h, text, doc, name, language, branch=True)  # saved elsewhere meanwhile: both kept
        assert doc.revision is not None
        number = h.number(doc.revision)
        newer = h.number(head) if head is not None and head != before.revision else None
    except REFUSALS as err:
        raise fail(err) from None
    if doc == before:
        return h, doc, f"Nothing new to save: the document reads as revision {number}"
    if newer is not None:
        return h, doc, (f"Saved as revision {number}, a branch: revision {newer} was saved meanwhile (in another "
                        "tab or window) and is kept too; the History tab shows both, Diff compares them")
    return h, doc, f"Saved as revision {number}"


def show_diff(page: Page, a: Any, b: Any, request: gr.Request) -> str:
    if a is None or b is None:
        raise error("Choose two revisions to compare.")
    try:
        return views.diff_html(page.mine(request).diff(int(a), int(b)))
    except REFUSALS as err:
        raise fail(err) from None


def restore(page: Page, b: Any, doc: Doc, name: str, language: str, request: gr.Request) -> tuple:
    """Revision B's text as a new head revision (nothing is rewritten); any run is dropped."""
    if b is None:
        raise error("Choose the revision to restore (B).")
    h = page.mine(request)
    try:
        rev = h.restore(int(b))
        old, new = h.number(int(b)), h.number(rev.id)
    except REFUSALS as err:
        raise fail(err) from None
    return _shown(h, Doc(rev.document_id, rev.id), rev.text, name, language,
                  f"Restored revision {old}; it is revision {new} now (Ctrl+Z goes back to before the restore).")


# -- undo / redo by revisions (the editor's Ctrl/Cmd+Z once its own undo history is empty) -------------
def stands_for(h: History, revision_id: int) -> int:
    """The revision whose state `revision_id` brought back, if the page's undo or redo made it (a
    person's Restore is an edit like any other: undoing it goes back to before it)."""
    rev = h.revision(revision_id)
    while rev.step is not None and rev.source_id is not None:
        rev = h.revision(rev.source_id)
    return rev.id


def undo_revision(page: Page, doc: Doc, redo: list[int], name: str, language: str, request: gr.Request) -> tuple:
    """One revision back: the state before the revision the text stands for is restored as the new
    head (history is append-only), and the revision left is remembered for redo.
    Outputs: the document shown afresh (`_shown`), then the redo list."""
    if doc.revision is None:
        raise error("Nothing to undo: this document has no revisions yet.", "Undo")
    h = page.mine(request)
    try:
        here = h.revision(stands_for(h, doc.revision))
        if here.parent_id is None:
            raise error("Nothing to undo: this is the document's first revision.", "Undo")
        rev = h.restore(here.parent_id, step="undo")
        undone, back = h.number(here.id), h.number(here.parent_id)
    except REFUSALS as err:
        raise fail(err) from None
    message = f"Undid revision {undone}: the document reads as revision {back} again (Ctrl+Shift+Z redoes it)."
    return *_shown(h, Doc(rev.document_id, rev.id), rev.text, name, language, message), [*redo, here.id]


def redo_revision(page: Page, doc: Doc, redo: list[int], name: str, language: str, request: gr.Request) -> tuple:
    """Redo the last revision undone, if the document is still where that undo left it."""
    if not redo or doc.revision is None:
        raise error("Nothing to redo.", "Redo")
    h, target = page.mine(request), redo[-1]
    try:
        if h.revision(target).parent_id != stands_for(h, doc.revision):
            raise error("Nothing to redo: the document changed since that undo.", "Redo")
        rev = h.restore(target, step="redo")
        number = h.number(target)
    except REFUSALS as err:
        raise fail(err) from None
    message = f"Redid revision {number}."
    return *_shown(h, Doc(rev.document_id, rev.id), rev.text, name, language, message), redo[:-1]


def label(page: Page, b: Any, text: str, doc: Doc, request: gr.Request) -> tuple:
    if b is None:
        raise error("Choose the revision to label (B).")
    h = page.mine(request)
    try:
        h.label(int(b), text.strip() or None)
    except REFUSALS as err:
        raise fail(err) from None
    return history_outputs(h, doc)


def pick_revision(evt: gr.SelectData) -> tuple:
    """A click on a revision in the tree picks it as B (Shift-click: as A)."""
    rev = int(evt.index)
    return (rev, KEEP) if evt.value == "A" else (KEEP, rev)
