"""Cloud delivery: a log names the blob its message was written to, and a batch
remembers its size so that a retry writes the same file.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("logs") as batch:
        batch.add_column(sa.Column("file_name", sa.String(1024), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("batch_size", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("batch_size")
    with op.batch_alter_table("logs") as batch:
        batch.drop_column("file_name")
