"""Drafts (typing not yet stored as a revision, kept across a reload) and revisions' `step` (a restore
made by the page's undo or redo, told apart from a person's Restore)."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("revisions", sa.Column("step", sa.String(4), nullable=True))
    op.create_table(
        "drafts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(255), nullable=True, index=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=True, index=True),
        sa.Column("base_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("drafts")
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("step")
