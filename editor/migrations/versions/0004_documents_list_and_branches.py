"""Documents get `archived` and `opened_at` (the page's documents list and reopening the last one);
revisions get `branch` (an edit kept as a branch off its parent, drawn as one even as an only child)."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("documents", sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("revisions", sa.Column("branch", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("branch")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("opened_at")
        batch.drop_column("archived")
