"""The documents list, called as the page calls its handlers: open, rename, archive, and a reload that
reopens the last document at its head, per login."""
import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from editor.history import History
from page import documents
from page.document_editor import EditorValue, document_key
from page.errors import Refusal
from page.state import NEW_DOC, Doc, Page

# documents._shown's outputs: the text, outputs.document_outputs, the run panel, the message
TEXT, DOC, TREE, DIFF, RESTORE, LABEL = 0, 1, 2, 5, 6, 7
NAME, LANGUAGE, RENAME, LISTED, ARCHIVED, ARCHIVE = 8, 9, 10, 11, 12, 13
UNSAVED = 15


UNTYPED = EditorValue("")  # the editor with nothing typed in it


def text_of(outputs) -> str:
    """The text a document handler puts in the editor (an update carrying its EditorValue)."""
    return outputs[TEXT]["value"].text


@pytest.fixture
def page():
    history = History("sqlite://")
    yield Page(None, history)  # type: ignore[arg-type]  # the documents handlers never touch the model
    history.close()


def login(name):
    return SimpleNamespace(username=name, session_hash="s")


def choices(update):
    return [label for label, _ in update["choices"]]


def test_a_reload_reopens_the_last_document_at_its_head_for_each_login(page):
    ann, bob = page.history.as_user("ann"), page.history.as_user("bob")
    notes = ann.create_document("notes.md", "# Notes\n", "markdown")
    ann.commit(notes.document_id, "# Notes\n\nMore.\n", notes.id)
    draft = ann.create_document("draft.txt", "draft\n")
    documents.open_document(page, notes.document_id, UNTYPED, NEW_DOC, "", "text", login("ann"))  # back to her notes
    bob.create_document("bob.txt", "bob\n")
    shown = documents.reopen(page, login("ann"))
    assert text_of(shown) == "# Notes\n\nMore.\n" and shown[NAME] == "notes.md" and shown[LANGUAGE] == "markdown"
    assert shown[DOC] == Doc(notes.document_id, ann.head(notes.document_id).id)
    assert shown[TREE].count('class="rev') == 2 and "current" in shown[TREE]
    assert all(shown[button]["interactive"] for button in (DIFF, RESTORE, LABEL, RENAME, ARCHIVE))
    assert choices(shown[LISTED]) == ["notes.md", "draft.txt"] and shown[LISTED]["value"] == notes.document_id
    assert "Reopened notes.md" in shown[-1] and draft.document_id != notes.document_id
    assert text_of(documents.reopen(page, login("bob"))) == "bob\n"
    fresh = documents.reopen(page, login("cy"))  # nobody's documents: a new one
    assert text_of(fresh) == "" and fresh[DOC] == NEW_DOC and choices(fresh[LISTED]) == []
    assert not any(fresh[button]["interactive"] for button in (DIFF, RESTORE, LABEL, RENAME, ARCHIVE))
    one = documents.open_document(page, draft.document_id, UNTYPED, NEW_DOC, "", "text", login("ann"))  # one revision
    assert not one[DIFF]["interactive"] and one[RESTORE]["interactive"]


def test_rename_archive_and_unarchive_from_the_list(page):
    h = page.history
    a = h.create_document("a.txt", "a\n")
    b = h.create_document("b.txt", "b\n")
    doc = Doc(a.document_id, a.id)
    *lists, message = documents.rename(page, "  alpha.txt ", doc, None)
    assert choices(lists[0]) == ["alpha.txt", "b.txt"] and "Renamed to alpha.txt" in message
    with pytest.raises(Exception, match="1 to 255 characters"):
        documents.rename(page, "", doc, None)
    shown = documents.archive(page, doc, None)  # the document used last before it opens
    assert text_of(shown) == "b\n" and choices(shown[LISTED]) == ["b.txt"] and choices(shown[ARCHIVED]) == ["alpha.txt"]
    assert h.head(a.document_id).text == "a\n"  # archived, not deleted
    *lists, message = documents.unarchive(page, a.document_id, shown[DOC], None)
    assert choices(lists[0]) == ["alpha.txt", "b.txt"] and lists[1]["choices"] == []
    with pytest.raises(Exception, match="Save the document first"):
        documents.rename(page, "x.txt", NEW_DOC, None)
    assert b.document_id == shown[DOC].id


def test_another_logins_document_cannot_be_opened_renamed_or_archived(page):
    theirs = page.history.as_user("ann").create_document("ann.txt", "private\n")
    for attempt in (lambda: documents.open_document(page, theirs.document_id, UNTYPED, NEW_DOC, "", "", login("bob")),
                    lambda: documents.rename(page, "mine.txt", Doc(theirs.document_id, theirs.id), login("bob")),
                    lambda: documents.archive(page, Doc(theirs.document_id, theirs.id), login("bob"))):
        with pytest.raises(Exception, match=f"no document {theirs.document_id}"):
            attempt()
    assert page.history.as_user("ann").documents()[0].name == "ann.txt"


def test_switching_documents_keeps_the_typing_not_yet_stored(page):
    h = page.history
    a = h.create_document("a.txt", "a\n")
    b = h.create_document("b.txt", "b\n")
    typed = EditorValue("a, typed on\n")
    shown = documents.open_document(page, b.document_id, typed, Doc(a.document_id, a.id), "a.txt",
                                    "text", None)
    assert text_of(shown) == "b\n" and h.head(a.document_id).text == "a, typed on\n" and "kept as revision" in shown[-1]
    h.commit(b.document_id, "b, from another tab\n", b.id)  # the head moves under this tab
    typed = EditorValue("b, typed here\n")
    shown = documents.new_document(page, typed, Doc(b.document_id, b.id), "b.txt", "text", None)
    revs = h.history(b.document_id)
    assert [r.text for r in revs][-1] == "b, typed here\n" and revs[-1].branch and "(a branch)" in shown[-1]
    assert h.head(b.document_id).text == "b, typed here\n" and text_of(shown) == ""
    shown = documents.new_document(page, EditorValue("never saved\n"), NEW_DOC, "idea.txt", "text", None)
    assert [d.name for d in h.documents()][-1] == "idea.txt" and "kept as idea.txt" in shown[-1]
    untouched = len(h.documents())
    documents.new_document(page, UNTYPED, NEW_DOC, "untitled.txt", "text", None)  # nothing typed: nothing stored
    documents.open_document(page, a.document_id, typed, Doc(b.document_id, revs[-1].id), "b.txt",
                            "text", None)  # already stored: no new revision
    assert len(h.documents()) == untouched and len(h.history(b.document_id)) == len(revs)


def test_typing_is_a_draft_until_saved_and_a_reload_brings_it_back_marked_unsaved(page):
    ann = login("ann")
    out = documents.open_file(page, str(write(page, "essay.txt", "First line.\n")), UNTYPED, NEW_DOC, "", "text", ann)
    doc = out[DOC]
    assert documents.keep_draft(page, EditorValue("First line.\nTyped on.\n"), doc, "essay.txt", "text", ann,
                                typed_in(doc.id))
    shown = documents.reopen(page, ann)  # a reload
    assert text_of(shown) == "First line.\nTyped on.\n" and "unsaved" in shown[UNSAVED]
    assert shown[DOC] == doc and "unsaved typing is back" in shown[-1]
    assert text_of(documents.reopen(page, login("bob"))) == ""  # another login sees none of it
    documents.save(page, EditorValue("First line.\nTyped on.\n"), doc, "essay.txt", "text", ann)
    again = documents.reopen(page, ann)  # stored as a revision: no draft any more
    assert text_of(again) == "First line.\nTyped on.\n" and again[UNSAVED] == ""


def test_text_typed_in_another_document_than_the_tabs_now_is_no_draft_of_it(page):
    """The browser sends a pause's draft only after an open has answered: the tab's document is then the
    opened one, while the text is the one typed in the document before (which the open stored)."""
    ann = login("ann")
    first = documents.open_file(page, str(write(page, "first.txt", "First.\n")), UNTYPED, NEW_DOC, "", "text", ann)
    second = documents.open_file(page, str(write(page, "second.txt", "Second.\n")), UNTYPED, first[DOC], "",
                                 "text", ann)
    assert second[0]["shown"] == str(second[DOC].id)  # the editor learns which document it shows
    documents.keep_draft(page, EditorValue("Typed in the first.\n"), second[DOC], "second.txt", "text", ann,
                         typed_in(first[DOC].id))
    shown = documents.reopen(page, ann)
    assert text_of(shown) == "Second.\n" and shown[UNSAVED] == ""  # no draft filed under the wrong document
    documents.keep_draft(page, EditorValue("Second, typed on.\n"), second[DOC], "second.txt", "text", ann,
                         typed_in(second[DOC].id))
    assert text_of(documents.reopen(page, ann)) == "Second, typed on.\n"


def typed_in(document_id):
    """The editor's "typed" event, sent from the document with this id."""
    return gr.EventData(None, {"shown": document_key(document_id)})


def test_undo_after_a_restore_goes_back_to_before_the_restore_and_names_what_it_undid(page):
    ann = login("ann")
    doc = documents.open_file(page, str(write(page, "a.txt", "one\n")), UNTYPED, NEW_DOC, "", "text", ann)[DOC]
    doc = documents.save(page, EditorValue("one\ntwo\n"), doc, "a.txt", "text", ann)[1]
    first = page.history.as_user("ann").history(doc.id)[0].id
    restored = documents.restore(page, first, doc, "a.txt", "text", ann)
    assert text_of(restored) == "one\n"
    undone = documents.undo_revision(page, restored[DOC], [], "a.txt", "text", ann)
    assert text_of(undone) == "one\ntwo\n"  # the state before the restore, not the restored one's parent
    assert "undo of #3" in undone[TREE] and "restored #1" in undone[TREE]
    redone = documents.redo_revision(page, undone[DOC], undone[-1], "a.txt", "text", ann)
    assert text_of(redone) == "one\n" and "redo of #3" in redone[TREE]


def test_undo_on_a_first_revision_is_a_refusal_not_a_crash(page):
    ann = login("ann")
    doc = documents.open_file(page, str(write(page, "b.txt", "only\n")), UNTYPED, NEW_DOC, "", "text", ann)[DOC]
    with pytest.raises(Refusal, match="Nothing to undo"):
        documents.undo_revision(page, doc, [], "b.txt", "text", ann)


def write(page, name, text):
    path = Path(tempfile.mkdtemp()) / name
    path.write_text(text)
    return path


def test_a_save_after_another_tab_saved_says_both_are_kept_as_branches(page):
    ann = login("ann")
    doc = documents.open_file(page, str(write(page, "shared.txt", "One.\n")), UNTYPED, NEW_DOC, "", "text", ann)[DOC]
    other = documents.save(page, EditorValue("One.\nFrom the other tab.\n"), doc, "shared.txt", "text", ann)
    assert other[-1] == "Saved as revision 2."
    mine = documents.save(page, EditorValue("One.\nFrom this tab.\n"), doc, "shared.txt", "text", ann)
    assert mine[-1].startswith("Saved as revision 3, a branch: revision 2 was saved meanwhile"), mine[-1]
    h = page.history.as_user("ann")
    assert [r.text for r in h.history(doc.id)][1:] == ["One.\nFrom the other tab.\n", "One.\nFrom this tab.\n"]
