"""Destination verification outcome: status, when it was checked, and why it failed.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.add_column(sa.Column("verification_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("verification_checked_at", sa.String(32), nullable=True))
        batch.add_column(sa.Column("verification_error", sa.Text, nullable=True))
