"""The documents list, called as the page calls its handlers: open, rename, archive, and a reload that
reopens the last document at its head, per login."""
from types import SimpleNamespace

import pytest

from editor.history import History
from page import documents
from page.document_editor import Document
from page.state import NEW_DOC, Doc, Page

# documents._shown's outputs: the text, outputs.document_outputs, the run panel, the message
TEXT, DOC, TREE, DIFF, RESTORE, LABEL = 0, 1, 2, 5, 6, 7
NAME, LANGUAGE, RENAME, LISTED, ARCHIVED, ARCHIVE = 8, 9, 10, 11, 12, 13


UNTYPED = Document("")  # the editor with nothing typed in it


def text_of(outputs) -> str:
    """The text a document handler puts in the editor (an update carrying its Document)."""
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
    shown = documents.open_document(page, b.document_id, Document("a, typed on\n"), Doc(a.document_id, a.id), "a.txt",
                                    "text", None)
    assert text_of(shown) == "b\n" and h.head(a.document_id).text == "a, typed on\n" and "kept as revision" in shown[-1]
    h.commit(b.document_id, "b, from another tab\n", b.id)  # the head moves under this tab
    shown = documents.new_document(page, Document("b, typed here\n"), Doc(b.document_id, b.id), "b.txt", "text", None)
    revs = h.history(b.document_id)
    assert [r.text for r in revs][-1] == "b, typed here\n" and revs[-1].branch and "(a branch)" in shown[-1]
    assert h.head(b.document_id).text == "b, typed here\n" and text_of(shown) == ""
    shown = documents.new_document(page, Document("never saved\n"), NEW_DOC, "idea.txt", "text", None)
    assert [d.name for d in h.documents()][-1] == "idea.txt" and "kept as idea.txt" in shown[-1]
    untouched = len(h.documents())
    documents.new_document(page, UNTYPED, NEW_DOC, "untitled.txt", "text", None)  # nothing typed: nothing stored
    documents.open_document(page, a.document_id, Document("b, typed here\n"), Doc(b.document_id, revs[-1].id), "b.txt",
                            "text", None)  # already stored: no new revision
    assert len(h.documents()) == untouched and len(h.history(b.document_id)) == len(revs)
