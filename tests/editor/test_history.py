"""History on SQLite and on a real PostgreSQL server: append-only revisions, races, crashes, restore."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from editor.diffs import PatchConflict
from editor.history import History, NotFound, Regeneration, StaleRevision
from editor.languages import UnknownLanguage
from editor.text import BinaryDocument, DocumentTooLarge, EditorError, NotUtf8

REPO = Path(__file__).resolve().parents[2]
BASE = "".join(f"line {i} é😀\n" for i in range(10))


@pytest.fixture
def history(db_url: str):
    h = History(db_url)
    yield h
    h.close()


def test_create_commit_and_read_back(history: History) -> None:
    first = history.create_document("notes.py", BASE)
    assert first.author == "typed" and first.parent_id is None and first.created_at.utcoffset().total_seconds() == 0
    regen = Regeneration([(0, 4)], "tiny-model", {"steps": 8}, seed=3, forwards=8, elapsed_ms=12.5)
    second = history.commit(first.document_id, BASE.replace("line 0", "LINE 0"), first.id, "regenerated",
                            regeneration=regen)
    assert second.parent_id == first.id
    doc = history.document(first.document_id)
    assert doc.language == "python" and doc.head_id == second.id
    assert history.revision(second.id).regeneration == regen
    assert [r.id for r in history.history(doc.id)] == [first.id, second.id]
    assert ("insert", "LINE") in history.diff(first.id, second.id)
    assert [d.id for d in history.documents()] == [doc.id]


def test_stale_merge_and_branch(history: History) -> None:
    first = history.create_document("a.txt", BASE)
    doc = first.document_id
    head = history.commit(doc, BASE.replace("line 9", "line nine"), first.id)
    with pytest.raises(StaleRevision, match=f"made on revision {first.id}, but the head is now revision {head.id}"):
        history.commit(doc, BASE.replace("line 0", "line zero"), first.id)
    merged = history.commit(doc, BASE.replace("line 0", "line zero"), first.id, merge=True)
    assert merged.author == "merged" and merged.parent_id == head.id and merged.source_id == first.id
    assert "line zero" in merged.text and "line nine" in merged.text
    count = len(history.history(doc))
    with pytest.raises(PatchConflict):
        history.commit(doc, BASE.replace("line 9", "line NINE"), first.id, merge=True)
    assert len(history.history(doc)) == count  # a conflict writes nothing
    branch = history.commit(doc, "another idea\n", first.id, branch=True)
    assert branch.parent_id == first.id and history.document(doc).head_id == branch.id
    assert {c.id for c in history.children(first.id)} == {head.id, branch.id}
    assert sorted(history.tree(doc)[first.id]) == sorted([head.id, branch.id])


def test_restore_and_label_do_not_rewrite(history: History) -> None:
    first = history.create_document("a.md", BASE)
    second = history.commit(first.document_id, "changed\n", first.id)
    restored = history.restore(first.id)
    assert restored.id not in (first.id, second.id) and restored.author == "restored"
    assert restored.text == first.text and restored.parent_id == second.id and restored.source_id == first.id
    assert history.revision(second.id).text == "changed\n"  # untouched
    history.label(first.id, "draft")
    assert history.revision(first.id).label == "draft"
    assert history.label(first.id, "final").label == "final"
    assert [r.label for r in history.history(first.document_id)] == ["final", None, None]
    assert history.revision(first.id).text == BASE


def test_export(history: History, tmp_path: Path) -> None:
    first = history.create_document("a.txt", "crlf\r\nline é😀\n")
    out = history.export(first.document_id, tmp_path / "a.txt")
    assert out.read_bytes() == "crlf\r\nline é😀\n".encode()


def test_bad_input(history: History) -> None:
    with pytest.raises(UnknownLanguage, match="supported:"):
        history.create_document("a", "x", language="klingon")
    with pytest.raises(BinaryDocument):
        history.create_document("a", "x\x00y")
    with pytest.raises(NotUtf8, match="not UTF-8"):
        history.create_document("a", b"caf\xe9")
    with pytest.raises(DocumentTooLarge):
        history.create_document("a", "x" * (2 * 1024 * 1024))
    first = history.create_document("a", "x")
    with pytest.raises(NotFound, match="no revision 9999"):
        history.commit(first.document_id, "y", 9999)
    with pytest.raises(NotFound, match="no document 9999"):
        history.commit(9999, "y", first.id)
    with pytest.raises(EditorError, match="how is"):
        history.commit(first.document_id, "y", first.id, how="restored")
    assert len(history.history(first.document_id)) == 1


def test_two_writers_racing_lose_nothing(db_url: str) -> None:
    setup = History(db_url)
    first = setup.create_document("race.txt", BASE)
    doc, rounds = first.document_id, 8
    outcomes: list[tuple[str, int]] = []
    lock = threading.Lock()

    def writer(who: int, merge: bool, barrier: threading.Barrier, base_id: int) -> None:
        h = History(db_url)
        lines = h.revision(base_id).text.splitlines(keepends=True)
        lines[who] = f"writer {who} round {base_id}\n"  # the two writers edit different lines
        text = "".join(lines)
        barrier.wait()
        try:
            rev = h.commit(doc, text, base_id, merge=merge)
            with lock:
                outcomes.append(("won" if rev.author == "typed" else "merged", rev.id))
        except StaleRevision:
            with lock:
                outcomes.append(("stale", 0))
        finally:
            h.close()

    for merge in (False, True):
        for _ in range(rounds):
            outcomes.clear()
            base_id = setup.document(doc).head_id
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=writer, args=(w, merge, barrier, base_id)) for w in (1, 8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            kinds = sorted(k for k, _ in outcomes)
            assert kinds == (["merged", "won"] if merge else ["stale", "won"]), kinds
            if merge:  # both edits are in the head: nothing was lost
                head = setup.head(doc).text
                assert f"writer 1 round {base_id}" in head and f"writer 8 round {base_id}" in head
    revisions = setup.history(doc)
    assert len(revisions) == 1 + rounds + 2 * rounds
    assert len({r.parent_id for r in revisions if r.parent_id}) == len(revisions) - 1  # a chain, no branch
    setup.close()


CHILD = """
import sys
from editor.history import History
h = History(sys.argv[1])
doc, base = int(sys.argv[2]), int(sys.argv[3])
for i in range(100000):
    rev = h.commit(doc, "".join(f"{j} é😀 {'x' * 200}\\n" for j in range(i % 50 + 1)), base)
    base = rev.id
    print(i, flush=True)
"""


def test_history_survives_kill_9_mid_commit(db_url: str) -> None:
    h = History(db_url)
    first = h.create_document("crash.txt", "start\n")
    h.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, db_url, str(first.document_id), str(first.id)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    for line in child.stdout:  # let it commit a while, then kill it wherever it is
        if int(line) >= 30 or time.monotonic() > deadline:
            break
    child.kill()
    child.wait()
    assert child.returncode == -9, child.stderr.read() if child.stderr else ""
    h = History(db_url)  # reopen, as a restarted server would
    revisions = {r.id: r for r in h.history(first.document_id)}
    head = h.document(first.document_id).head_id
    assert head in revisions and len(revisions) >= 31
    for rev in revisions.values():
        assert rev.parent_id is None or rev.parent_id in revisions
        if rev.id != first.id:
            lines = rev.text.splitlines()
            assert lines == [f"{j} é😀 {'x' * 200}" for j in range(len(lines))]
    # the survivors form one chain from the first revision to the head
    chain, at = [], head
    while at is not None:
        chain.append(at)
        at = revisions[at].parent_id
    assert chain[-1] == first.id and len(chain) == len(revisions)
    h.commit(first.document_id, "after the crash\n", head)  # still writable
    h.close()


@pytest.mark.postgres
@pytest.mark.parametrize("merge", [False, True])
def test_head_moved_between_read_and_update(postgres_url: str, merge: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version check (version_id_col) catches a writer that commits after this transaction read the head.

    PostgreSQL only: on SQLite, BEGIN IMMEDIATE already makes the second writer wait for the first.
    """
    h, other = History(postgres_url), History(postgres_url)
    first = h.create_document("a.txt", BASE)
    real_row = History._row
    sneaked: list[int] = []

    def row_then_sneak_in(self: History, s, revision_id: int):
        if self is h and not sneaked:  # after h read the head, another process commits
            sneaked.append(other.commit(first.document_id, BASE.replace("line 9", "other"), first.id).id)
        return real_row(self, s, revision_id)

    monkeypatch.setattr(History, "_row", row_then_sneak_in)
    mine = BASE.replace("line 0", "mine")
    if merge:
        rev = h.commit(first.document_id, mine, first.id, merge=True)
        assert rev.author == "merged" and rev.parent_id == sneaked[0] and "other" in rev.text and "mine" in rev.text
    else:
        with pytest.raises(StaleRevision) as info:
            h.commit(first.document_id, mine, first.id)
        assert info.value.head_id == sneaked[0] and f"head is now revision {sneaked[0]}" in str(info.value)
    assert len(h.history(first.document_id)) == (3 if merge else 2)  # the loser's insert was rolled back
    h.close()
    other.close()


def test_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Under WAL a reader sees the last commit while another connection holds the write lock."""
    url = f"sqlite:///{tmp_path / 'sharpen.db'}"
    h = History(url)
    first = h.create_document("a.txt", BASE)
    writer = sqlite3.connect(tmp_path / "sharpen.db", isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a commit
    release = threading.Timer(5, writer.rollback)  # a reader that queued behind it waits this long
    release.start()
    try:
        started = time.monotonic()
        assert h.head(first.document_id).text == BASE and [d.id for d in h.documents()] == [first.document_id]
        assert h.history(first.document_id)[0].id == first.id
        assert time.monotonic() - started < 2
    finally:
        release.cancel()
        if writer.in_transaction:
            writer.rollback()
        writer.close()
        h.close()


def test_another_owners_documents_are_invisible(history: History) -> None:
    ann, bob = history.as_user("ann"), history.as_user("bob")
    mine = ann.create_document("ann.txt", BASE)
    theirs = bob.create_document("bob.txt", "bob's\n")
    assert [d.id for d in ann.documents()] == [mine.document_id] and ann.document(mine.document_id).owner == "ann"
    assert history.documents() == []  # the login-free local user owns neither
    for attempt in (lambda: ann.document(theirs.document_id), lambda: ann.head(theirs.document_id),
                    lambda: ann.revision(theirs.id), lambda: ann.history(theirs.document_id),
                    lambda: ann.children(theirs.id), lambda: ann.restore(theirs.id),
                    lambda: ann.label(theirs.id, "mine now"), lambda: ann.diff(mine.id, theirs.id),
                    lambda: ann.commit(theirs.document_id, "overwritten\n", theirs.id),
                    lambda: ann.commit(mine.document_id, "x\n", theirs.id)):
        with pytest.raises(NotFound):
            attempt()
    assert bob.head(theirs.document_id).text == "bob's\n" and bob.revision(theirs.id).label is None
    assert len(bob.history(theirs.document_id)) == 1 and len(ann.history(mine.document_id)) == 1


def test_a_database_from_before_versions_and_owners_upgrades(tmp_path: Path) -> None:
    """A database made by the first schema keeps its documents, and its head moves as before."""
    from alembic import command
    from alembic.config import Config

    from editor.db import open_database
    from editor.history import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    database = open_database(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql("INSERT INTO documents (id, name, language, created_at) VALUES (1, 'a.txt', 'text', "
                             "'2026-01-01 00:00:00')")
        conn.exec_driver_sql("INSERT INTO revisions (id, document_id, created_at, author, text) VALUES "
                             "(1, 1, '2026-01-01 00:00:00', 'typed', 'old')")
        conn.exec_driver_sql("UPDATE documents SET head_id = 1 WHERE id = 1")
    database.dispose()
    h = History(url)
    assert h.head(1).text == "old" and h.document(1).owner is None and not h.document(1).archived
    assert h.last_opened().id == 1 and not h.head(1).branch
    second = h.commit(1, "new", 1)
    with pytest.raises(StaleRevision):
        h.commit(1, "stale", 1)
    assert h.head(1).id == second.id
    h.close()


def test_a_branch_on_the_head_is_recorded_as_one(history: History) -> None:
    """commit(branch=True) on the head itself keeps the edit as a branch: the tree can show it as one."""
    first = history.create_document("a.txt", BASE)
    straight = history.commit(first.document_id, BASE + "next\n", first.id)
    branched = history.commit(first.document_id, BASE + "other\n", straight.id, branch=True)
    assert not straight.branch and branched.branch and branched.parent_id == straight.id
    assert history.head(first.document_id).id == branched.id
    assert [r.branch for r in history.history(first.document_id)] == [False, False, True]


def test_documents_are_renamed_archived_and_the_last_opened_comes_back(history: History) -> None:
    a = history.create_document("a.txt", "a\n")
    b = history.create_document("b.md", "b\n")
    assert history.last_opened().id == b.document_id  # a new document counts as opened
    history.mark_opened(a.document_id)
    assert history.last_opened().id == a.document_id
    renamed = history.rename(a.document_id, "notes.txt")
    assert renamed.name == "notes.txt" and history.head(a.document_id).text == "a\n"
    with pytest.raises(EditorError, match="1 to 255 characters"):
        history.rename(a.document_id, "  ")
    history.archive(a.document_id)
    assert [d.id for d in history.documents()] == [b.document_id]
    assert [d.id for d in history.documents(archived=True)] == [a.document_id]
    assert history.last_opened().id == b.document_id  # an archived document is not reopened
    history.archive(a.document_id, False)
    assert [d.name for d in history.documents()] == ["notes.txt", "b.md"]
    # renaming and archiving never make a commit on the head stale (they leave `version` alone)
    assert history.commit(a.document_id, "a2\n", a.id).parent_id == a.id
    with pytest.raises(NotFound):
        history.as_user("eve").rename(a.document_id, "mine.txt")
    with pytest.raises(NotFound):
        history.as_user("eve").archive(a.document_id)
    assert history.as_user("eve").last_opened() is None


def test_a_draft_per_owner_and_document_until_a_revision_stores_it(history: History) -> None:
    rev = history.create_document("notes.txt", "one\n")
    history.keep_draft(rev.document_id, rev.id, "one\ntwo\n", "notes.txt", "text")
    history.keep_draft(rev.document_id, rev.id, "one\ntwo\nthree\n", "notes.txt", "text")  # rewritten, not added
    draft = history.draft(rev.document_id)
    assert draft is not None and draft.text == "one\ntwo\nthree\n" and draft.base_id == rev.id
    assert history.as_user("someone else").draft(rev.document_id) is None
    assert history.keep_draft(rev.document_id, rev.id, "one\n", "notes.txt", "text") is None  # reads as its base
    assert history.draft(rev.document_id) is None
    history.keep_draft(None, None, "a new one", "untitled.txt", "text")
    history.keep_draft(rev.document_id, rev.id, "one\ntwo\n", "notes.txt", "text")
    history.commit(rev.document_id, "one\ntwo\n", rev.id)  # the typing stored: its draft goes
    assert history.draft(rev.document_id) is None and history.draft(None) is not None
    undo = history.restore(rev.id, step="undo")
    assert undo.step == "undo" and history.revision(undo.id).step == "undo"
    assert history.number(undo.id) == 3 and history.number(rev.id) == 1
