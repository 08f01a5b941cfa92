"""Sources: who sends, their legacy secrets and OAuth keys, and the tokens they send with.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column(
            "environment_id",
            sa.String(36),
            sa.ForeignKey("environments.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=True),
        sa.Column("secret_sealed", sa.Text, nullable=True),
        sa.Column("previous_secret_hash", sa.String(64), nullable=True),
        sa.Column("previous_secret_sealed", sa.Text, nullable=True),
        sa.Column("previous_secret_expires_at", sa.String(32), nullable=True),
        sa.Column("jwks_url", sa.String(2048), nullable=True),
        sa.Column("jwk_set", sa.JSON, nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "source_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "source_id",
            sa.String(36),
            sa.ForeignKey("sources.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
    )
