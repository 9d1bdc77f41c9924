"""Storage schema (typed SQLAlchemy 2 ORM) and the database's setup: documents, append-only revisions, labels."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

AUTHORS = ("typed", "regenerated", "restored", "merged")
STEPS = ("undo", "redo")  # a "restored" revision the page's undo or redo made (RevisionRow.step)
WRITE = "sharpen_write"  # execution option of write transactions: on SQLite they BEGIN IMMEDIATE
REPO = Path(__file__).resolve().parent.parent


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    """A document: a name, a language, its owner and a pointer to its newest revision (the only moving part).

    `version` is SQLAlchemy's optimistic concurrency counter (`version_id_col`): every UPDATE of
    the row says `WHERE version = <the version this session read>` and bumps it, so a writer whose
    read went stale gets StaleDataError and its transaction rolls back.
    """

    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    head_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id", name="fk_documents_head"))
    version: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(255), index=True)  # the login name; None: no login
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last opened in the page
    __mapper_args__ = {"version_id_col": version}


class RevisionRow(Base):
    """One full text of a document. Inserted once and never updated or deleted."""

    __tablename__ = "revisions"
    __table_args__ = (CheckConstraint(f"author IN {AUTHORS!r}", name="ck_revisions_author"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"), index=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))  # restored from / merged edit's base
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    author: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    branch: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # kept as a branch
    step: Mapped[str | None] = mapped_column(String(4))  # restored by an undo or a redo (STEPS), not a Restore
    # Set for author == "regenerated": what the model did to produce this text.
    spans: Mapped[list[Any] | None] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(255))
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    forwards: Mapped[int | None] = mapped_column(Integer)
    elapsed_ms: Mapped[float | None] = mapped_column(Float)


class LabelRow(Base):
    """A person's name for a revision. Metadata about a revision, kept apart so revisions stay unwritten."""

    __tablename__ = "labels"
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"), primary_key=True)
    text: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DraftRow(Base):
    """Typing the page has not stored as a revision yet: one per owner and document (document None: a
    new document), brought back after a reload. Rewritten as the person types; storing a revision of the
    document removes it."""

    __tablename__ = "drafts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id"), index=True)
    base_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))  # the revision the typing began on
    name: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def sqlite_url(folder: Path) -> str:
    """The SQLite file sharpen.db in `folder` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'sharpen.db'}"


def open_database(url: str) -> Engine:
    """The database at `url` (SQLAlchemy's Engine: here "engine" is the diffusion engine, so its name
    is database); SQLite gets WAL, foreign keys, a busy timeout, and write transactions (those on
    `database.execution_options(sharpen_write=True)`) that take the write lock when they begin."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    database = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                           poolclass=StaticPool if memory else None)

    @event.listens_for(database, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: committed data survives a killed process
        cursor.close()

    @event.listens_for(database, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer's IMMEDIATE takes the write lock at BEGIN, so two writers queue (busy timeout)
        # instead of one failing with "database is locked" when it upgrades a read lock
        # mid-transaction. A reader's plain BEGIN reads a WAL snapshot and waits for nobody.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return database
