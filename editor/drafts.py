"""Drafts: typing the page has not stored as a revision yet, one per owner and document (None: a new
document), kept so a reload brings it back; History's draft methods and commits use these."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from editor.db import DraftRow, RevisionRow, utcnow


@dataclass(frozen=True)
class Draft:
    """Typing not stored as a revision yet: on `base_id` of `document_id` (None, None: a new document)."""

    document_id: int | None
    base_id: int | None
    name: str
    language: str
    text: str
    updated_at: datetime  # UTC


def _of(owner: str | None, document_id: int | None) -> Any:
    return select(DraftRow).where(DraftRow.owner == owner).where(DraftRow.document_id == document_id)


def _draft(row: DraftRow) -> Draft:
    at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)  # SQLite drops the zone
    return Draft(row.document_id, row.base_id, row.name, row.language, row.text, at)


def drop(s: Session, owner: str | None, document_id: int | None) -> None:
    for row in s.scalars(_of(owner, document_id)).all():
        s.delete(row)


def keep(s: Session, owner: str | None, document_id: int | None, base: RevisionRow | None, text: str, name: str,
         language: str) -> Draft | None:
    """The draft rewritten (one per owner and document); none when the text reads as its base, or is
    empty for a new document."""
    drop(s, owner, document_id)
    if (base.text == text) if base is not None else not text:
        return None
    row = DraftRow(owner=owner, document_id=document_id, base_id=base.id if base is not None else None,
                   name=name[:255] or "untitled.txt", language=language, text=text, updated_at=utcnow())
    s.add(row)
    return _draft(row)


def latest(s: Session, owner: str | None, document_id: int | None) -> Draft | None:
    row = s.scalars(_of(owner, document_id).order_by(DraftRow.id.desc()).limit(1)).first()
    return _draft(row) if row is not None else None
