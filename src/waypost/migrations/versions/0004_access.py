"""Access: expiring platform tokens, registered public keys, used assertions, audit events.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.String(32), nullable=True))
        batch.add_column(sa.Column("client_id", sa.String(36), nullable=True))
        batch.create_index("ix_api_tokens_client_id", ["client_id"])
    op.create_table(
        "api_clients",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
    )
    op.create_table(
        "api_client_keys",
        sa.Column(
            "client_id",
            sa.String(36),
            sa.ForeignKey("api_clients.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kid", sa.String(255), primary_key=True),
        sa.Column("jwk", sa.JSON, nullable=False),
    )
    op.create_table(
        "used_assertions",
        sa.Column("client_id", sa.String(36), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("expires_at", sa.String(32), nullable=False, index=True),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("organization_id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("request_ip", sa.String(64), nullable=True),
        sa.Column("route", sa.String(255), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_events_org_seq", "audit_events", ["organization_id", "seq"])
