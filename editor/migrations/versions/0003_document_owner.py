"""Documents get an `owner` (the login name; NULL for the login-free local user)."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("owner", sa.String(255), nullable=True))
    op.create_index("ix_documents_owner", "documents", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_documents_owner", table_name="documents")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("owner")
