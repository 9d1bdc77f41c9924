"""Documents get `version`, SQLAlchemy's optimistic concurrency counter for moving the head."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("version", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("version")
