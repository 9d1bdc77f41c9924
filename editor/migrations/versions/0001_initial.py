"""Initial schema: documents, revisions, labels."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AUTHORS = ("typed", "regenerated", "restored", "merged")


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("head_id", sa.Integer, nullable=True),
    )
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False, index=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=True, index=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("spans", sa.JSON, nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("settings", sa.JSON, nullable=True),
        sa.Column("seed", sa.BigInteger, nullable=True),
        sa.Column("forwards", sa.Integer, nullable=True),
        sa.Column("elapsed_ms", sa.Float, nullable=True),
        sa.CheckConstraint(f"author IN {AUTHORS!r}", name="ck_revisions_author"),
    )
    # documents <-> revisions reference each other: the head key is added once both tables exist
    # (batch mode, so SQLite rebuilds the still empty table).
    with op.batch_alter_table("documents") as batch:
        batch.create_foreign_key("fk_documents_head", "revisions", ["head_id"], ["id"])
    op.create_table(
        "labels",
        sa.Column("revision_id", sa.Integer, sa.ForeignKey("revisions.id"), primary_key=True),
        sa.Column("text", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("labels")
    with op.batch_alter_table("documents") as batch:
        batch.drop_constraint("fk_documents_head", type_="foreignkey")
    op.drop_table("revisions")
    op.drop_table("documents")
