"""Document history: append-only revisions with optimistic concurrency, branches, restore, labels and owners."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import false, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from editor import drafts
from editor.db import STEPS, WRITE, DocumentRow, LabelRow, RevisionRow, open_database, utcnow
from editor.diffs import diff as text_diff
from editor.diffs import rebase_edit
from editor.drafts import Draft
from editor.languages import get_language, language_for
from editor.text import EditorError, check_document

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MERGE_TRIES = 5  # a merge that loses the race to yet another writer rebases again, this often


class NotFound(EditorError):
    """No document or revision with that id."""


class StaleRevision(EditorError):
    """The edit was made on a revision that is no longer the document's head."""

    def __init__(self, document_id: int, base_id: int, head_id: int | None) -> None:
        self.document_id, self.base_id, self.head_id = document_id, base_id, head_id
        super().__init__(f"document {document_id}: the edit was made on revision {base_id}, but the head is now "
                         f"revision {head_id}: commit it with merge=True (rebased onto the head) or branch=True "
                         f"(kept beside it)")


@dataclass(frozen=True)
class Regeneration:
    """What the model did, stored with a "regenerated" revision."""

    spans: list[tuple[int, int]]
    model: str
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    forwards: int | None = None
    elapsed_ms: float | None = None


@dataclass(frozen=True)
class Revision:
    id: int
    document_id: int
    parent_id: int | None
    source_id: int | None  # restored: the revision restored; merged: the revision the edit was made on
    created_at: datetime  # UTC
    author: str  # "typed" | "regenerated" | "restored" | "merged"
    text: str
    label: str | None
    regeneration: Regeneration | None
    branch: bool = False  # kept as a branch off its parent (commit(branch=True)), not its parent's next version
    step: str | None = None  # "restored" by the page's undo or redo (db.STEPS), not by a person's Restore


@dataclass(frozen=True)
class Document:
    id: int
    name: str
    language: str
    created_at: datetime
    head_id: int
    owner: str | None = None
    archived: bool = False
    opened_at: datetime | None = None  # UTC; last opened in the page


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)  # SQLite drops the zone


def _document(row: DocumentRow) -> Document:
    opened = _utc(row.opened_at) if row.opened_at is not None else None
    return Document(row.id, row.name, row.language, _utc(row.created_at), row.head_id or 0, row.owner,
                    row.archived, opened)


def _check_name(name: str) -> str:
    if not name.strip() or len(name) > 255:
        raise EditorError(f"a document name is 1 to 255 characters, not {len(name.strip())}")
    return name


def _revision(row: RevisionRow, label: str | None) -> Revision:
    regen = None
    if row.author == "regenerated" and row.model is not None:
        regen = Regeneration([tuple(s) for s in row.spans or []], row.model, row.settings or {}, row.seed,
                             row.forwards, row.elapsed_ms)
    return Revision(row.id, row.document_id, row.parent_id, row.source_id, _utc(row.created_at), row.author,
                    row.text, label, regen, bool(row.branch), row.step)


class History:
    """All documents and their revisions in one database (SQLite file or PostgreSQL), as one owner sees them.

    A History shows and changes only the documents of its `owner` (None: the login-free local
    user); `as_user(name)` is the same database seen by another owner. Another owner's document
    or revision reads as NotFound, exactly like one that does not exist.
    """

    def __init__(self, url: str, owner: str | None = None) -> None:
        self.url, self.owner = url, owner
        self.database = open_database(self.url)
        self._reads = sessionmaker(self.database, expire_on_commit=False)
        self._writes = sessionmaker(self.database.execution_options(**{WRITE: True}), expire_on_commit=False)
        self._migrate()

    def as_user(self, owner: str | None) -> History:
        """This database as `owner` sees it (sharing the database: close the History it came from)."""
        view = copy.copy(self)
        view.owner = owner
        return view

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.database.execution_options(**{WRITE: True}).begin() as conn:
            if conn.dialect.name == "postgresql":  # two processes starting at once migrate one after the other
                conn.execute(text("SELECT pg_advisory_xact_lock(7411)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self.database.dispose()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A read transaction: on SQLite a plain BEGIN, which waits for no writer (WAL)."""
        with self._reads() as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction: on SQLite BEGIN IMMEDIATE, so writers queue instead of failing."""
        with self._writes() as session, session.begin():
            yield session

    # -- reading -----------------------------------------------------------------------------------
    def _row(self, s: Session, revision_id: int) -> RevisionRow:
        row = s.get(RevisionRow, revision_id)
        if row is None or not self._mine(s.get(DocumentRow, row.document_id)):
            raise NotFound(f"no revision {revision_id}")
        return row

    def _doc(self, s: Session, document_id: int) -> DocumentRow:
        row = s.get(DocumentRow, document_id)
        if row is None or not self._mine(row):
            raise NotFound(f"no document {document_id}")
        return row

    def _mine(self, doc: DocumentRow | None) -> bool:
        return doc is not None and doc.owner == self.owner

    def _label(self, s: Session, revision_id: int) -> str | None:
        return s.scalar(select(LabelRow.text).where(LabelRow.revision_id == revision_id))

    def _public(self, s: Session, row: RevisionRow) -> Revision:
        return _revision(row, self._label(s, row.id))

    def documents(self, archived: bool = False) -> list[Document]:
        """This owner's documents, oldest first: those in use, or (archived=True) the archived ones."""
        with self._read() as s:
            rows = s.scalars(select(DocumentRow).where(DocumentRow.owner == self.owner)  # None: IS NULL
                             .where(DocumentRow.archived == archived).order_by(DocumentRow.id)).all()
            return [_document(r) for r in rows]

    def last_opened(self) -> Document | None:
        """The document in use this owner opened (or made) last; None when there is none."""
        with self._read() as s:
            row = s.scalars(select(DocumentRow).where(DocumentRow.owner == self.owner)
                            .where(DocumentRow.archived == false())
                            .order_by(func.coalesce(DocumentRow.opened_at, DocumentRow.created_at).desc(),
                                      DocumentRow.id.desc()).limit(1)).first()
            return _document(row) if row is not None else None

    def document(self, document_id: int) -> Document:
        with self._read() as s:
            return _document(self._doc(s, document_id))

    def revision(self, revision_id: int) -> Revision:
        with self._read() as s:
            return self._public(s, self._row(s, revision_id))

    def head(self, document_id: int) -> Revision:
        with self._read() as s:
            doc = self._doc(s, document_id)
            return self._public(s, self._row(s, doc.head_id or 0))

    def history(self, document_id: int) -> list[Revision]:
        """Every revision of a document, oldest first."""
        with self._read() as s:
            self._doc(s, document_id)
            rows = s.scalars(select(RevisionRow).where(RevisionRow.document_id == document_id)
                             .order_by(RevisionRow.id)).all()
            labels = dict(s.execute(select(LabelRow.revision_id, LabelRow.text).join(RevisionRow)
                                    .where(RevisionRow.document_id == document_id)).all())
            return [_revision(r, labels.get(r.id)) for r in rows]

    def children(self, revision_id: int) -> list[Revision]:
        with self._read() as s:
            self._row(s, revision_id)
            rows = s.scalars(select(RevisionRow).where(RevisionRow.parent_id == revision_id)
                             .order_by(RevisionRow.id)).all()
            return [self._public(s, r) for r in rows]

    def tree(self, document_id: int) -> dict[int, list[int]]:
        """Revision id -> ids of its children, for every revision of the document."""
        out: dict[int, list[int]] = {}
        for rev in self.history(document_id):
            out.setdefault(rev.id, [])
            if rev.parent_id is not None:
                out.setdefault(rev.parent_id, []).append(rev.id)
        return out

    def diff(self, rev_a: int, rev_b: int) -> list[tuple[str, str]]:
        """Diff for people from revision a to revision b."""
        return text_diff(self.revision(rev_a).text, self.revision(rev_b).text)

    # -- writing -----------------------------------------------------------------------------------
    def create_document(self, name: str, text: str | bytes, language: str | None = None) -> Revision:
        """A new document with its first revision (typed) as head."""
        content = check_document(text)
        lang = get_language(language).name if language is not None else language_for(name)
        _check_name(name)
        with self._write() as s:
            doc = DocumentRow(name=name, language=lang, owner=self.owner, opened_at=utcnow())
            s.add(doc)
            s.flush()
            row = RevisionRow(document_id=doc.id, author="typed", text=content)
            s.add(row)
            s.flush()
            doc.head_id = row.id
            return _revision(row, None)

    def commit(self, document_id: int, text: str | bytes, base_revision_id: int, how: str = "typed", *,
               regeneration: Regeneration | None = None, merge: bool = False, branch: bool = False) -> Revision:
        """Record `text`, an edit of revision `base_revision_id`, as the document's new head.

        If the head is no longer the base: by default StaleRevision and nothing is written;
        merge=True rebases the edit (base -> text) onto the head (diffs.rebase_edit) and records it as
        "merged" (PatchConflict and nothing written when it does not apply); branch=True keeps
        the edit as a child of its base, starting a branch, and makes it the head. The head moves
        with the document row's version check (`version_id_col`: UPDATE ... WHERE version = the
        version this transaction read), so of two writers on the same head exactly one wins, also
        across processes.
        """
        if how not in ("typed", "regenerated"):
            raise EditorError(f"how is 'typed' or 'regenerated', not {how!r}")
        if merge and branch:
            raise EditorError("merge=True and branch=True exclude each other")
        content = check_document(text)
        for _ in range(_MERGE_TRIES):
            try:
                return self._commit_once(document_id, content, base_revision_id, how, regeneration, merge, branch)
            except StaleDataError:  # another writer moved the head after we read it; nothing was written
                if not merge:
                    raise StaleRevision(document_id, base_revision_id,
                                        self.document(document_id).head_id) from None
        raise EditorError(f"document {document_id}: gave up merging after {_MERGE_TRIES} lost races")

    def _commit_once(self, document_id: int, text: str, base_revision_id: int, how: str,
                     regeneration: Regeneration | None, merge: bool, branch: bool) -> Revision:
        with self._write() as s:
            doc = self._doc(s, document_id)
            base = self._row(s, base_revision_id)
            if base.document_id != document_id:
                raise NotFound(f"revision {base_revision_id} is not a revision of document {document_id}")
            seen_head = doc.head_id
            row = RevisionRow(document_id=document_id, parent_id=base.id, author=how, text=text, branch=branch)
            if regeneration is not None:
                row.spans = [list(span) for span in regeneration.spans]
                row.model, row.settings, row.seed = regeneration.model, regeneration.settings, regeneration.seed
                row.forwards, row.elapsed_ms = regeneration.forwards, regeneration.elapsed_ms
            if seen_head != base.id and not branch:
                if not merge:
                    raise StaleRevision(document_id, base.id, seen_head)
                head = self._row(s, seen_head or 0)
                row.text = check_document(rebase_edit(base.text, text, head.text))
                row.parent_id, row.source_id, row.author = head.id, base.id, "merged"
            s.add(row)
            s.flush()
            doc.head_id = row.id
            s.flush()  # UPDATE documents ... WHERE version = <read>: StaleDataError if another writer won
            drafts.drop(s, self.owner, document_id)  # the typing is a revision now
            return _revision(row, None)

    def restore(self, revision_id: int, step: str | None = None) -> Revision:
        """A new head revision whose text is that of an older revision (nothing is rewritten); `step`:
        made by the page's "undo" or "redo" rather than a person's Restore."""
        if step is not None and step not in STEPS:
            raise EditorError(f"step is one of {STEPS}, not {step!r}")
        for _ in range(_MERGE_TRIES):
            try:
                with self._write() as s:
                    old = self._row(s, revision_id)
                    doc = self._doc(s, old.document_id)
                    row = RevisionRow(document_id=doc.id, parent_id=doc.head_id, source_id=old.id,
                                      author="restored", text=old.text, step=step)
                    s.add(row)
                    s.flush()
                    doc.head_id = row.id
                    s.flush()  # the version check, as in commit
                    drafts.drop(s, self.owner, doc.id)
                    return _revision(row, None)
            except StaleDataError:
                continue
        raise EditorError(f"revision {revision_id}: gave up restoring after {_MERGE_TRIES} lost races")

    def label(self, revision_id: int, label: str | None) -> Revision:
        """Name a revision (None removes the name). Labels live in their own table: the revision is untouched."""
        if label is not None and (not label.strip() or len(label) > 255):
            raise EditorError("a label is 1 to 255 characters")
        with self._write() as s:
            row = self._row(s, revision_id)
            existing = s.get(LabelRow, revision_id)
            if existing is not None:
                s.delete(existing)
                s.flush()
            if label is not None:
                s.add(LabelRow(revision_id=revision_id, text=label))
            return _revision(row, label)

    # -- a document's own fields: plain UPDATEs that leave `version` alone, so they never make a
    # -- concurrent commit stale (only moving the head does) -------------------------------------------
    def _set(self, document_id: int, **values: Any) -> Document:
        with self._write() as s:
            self._doc(s, document_id)
            s.execute(update(DocumentRow).where(DocumentRow.id == document_id).values(**values)
                      .execution_options(synchronize_session=False))
        return self.document(document_id)

    def rename(self, document_id: int, name: str) -> Document:
        return self._set(document_id, name=_check_name(name))

    def archive(self, document_id: int, archived: bool = True) -> Document:
        """Take a document out of the list (archived=False puts it back); nothing is deleted."""
        return self._set(document_id, archived=archived)

    def mark_opened(self, document_id: int) -> Document:
        """Record that the document was opened now: `last_opened` reopens it."""
        return self._set(document_id, opened_at=utcnow())

    # -- drafts: typing not stored as a revision yet, one per document (None: a new document) ---------
    def keep_draft(self, document_id: int | None, base_id: int | None, text: str, name: str,
                   language: str) -> Draft | None:
        """Keep the typing on revision `base_id` of `document_id` (None, None: a new document) until a
        revision stores it; typing that reads as its base (or an empty new document) keeps no draft."""
        content = check_document(text)
        with self._write() as s:
            base = None
            if document_id is not None:
                self._doc(s, document_id)
                base = self._row(s, base_id or 0)
                if base.document_id != document_id:
                    raise NotFound(f"revision {base_id} is not a revision of document {document_id}")
            return drafts.keep(s, self.owner, document_id, base, content, name, get_language(language).name)

    def draft(self, document_id: int | None) -> Draft | None:
        """The typing kept for a document (None: for a new one), or None."""
        with self._read() as s:
            return drafts.latest(s, self.owner, document_id)

    def drop_draft(self, document_id: int | None) -> None:
        with self._write() as s:
            drafts.drop(s, self.owner, document_id)

    def number(self, revision_id: int) -> int:
        """A revision's number within its document (1 for its first), as people see it."""
        with self._read() as s:
            row = self._row(s, revision_id)
            return s.scalar(select(func.count()).select_from(RevisionRow)
                            .where(RevisionRow.document_id == row.document_id)
                            .where(RevisionRow.id <= revision_id)) or 0

    def export(self, document_id: int, path: str | Path, revision_id: int | None = None) -> Path:
        """Write the head (or a given revision) of a document to a UTF-8 file, byte for byte."""
        rev = self.head(document_id) if revision_id is None else self.revision(revision_id)
        if rev.document_id != document_id:
            raise NotFound(f"revision {rev.id} is not a revision of document {document_id}")
        out = Path(path)
        out.write_text(rev.text, encoding="utf-8", newline="")
        return out
