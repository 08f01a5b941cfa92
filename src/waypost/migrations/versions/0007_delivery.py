"""Delivery: subscriptions, messages, logs and attempts, the outbox, idempotency keys.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("seq", SEQ, primary_key=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column(
            "environment_id",
            sa.String(36),
            sa.ForeignKey("environments.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "source_id",
            sa.String(36),
            sa.ForeignKey("sources.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "destination_id",
            sa.String(36),
            sa.ForeignKey("destinations.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("data_model", sa.String(255), nullable=False),
        sa.Column("data_model_key", sa.String(255), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.UniqueConstraint(
            "source_id", "data_model_key", "destination_id", name="uq_subscriptions_triple"
        ),
    )
    op.create_table(
        "messages",
        sa.Column("seq", SEQ, primary_key=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("source_id", sa.String(36), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "logs",
        sa.Column("seq", SEQ, primary_key=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column(
            "message_id",
            sa.String(36),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("organization_id", sa.Integer, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data_model", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("test", sa.Boolean, nullable=False),
        sa.Column("source_id", sa.String(36), nullable=False),
        sa.Column("source_name", sa.String(255), nullable=False),
        sa.Column("destination_id", sa.String(36), nullable=False),
        sa.Column("destination_name", sa.String(255), nullable=False),
        sa.Column("attempts_total", sa.Integer, nullable=False),
        sa.Column("latest_attempt_id", sa.String(36), nullable=True),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Index("ix_logs_environment_seq", "environment_id", "seq"),
        sa.Index("ix_logs_destination_seq", "destination_id", "seq"),
        sa.Index("ix_logs_environment_status_seq", "environment_id", "status", "seq"),
    )
    op.create_table(
        "attempts",
        sa.Column("seq", SEQ, primary_key=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column(
            "log_id",
            sa.String(36),
            sa.ForeignKey("logs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("attempt_at", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", SEQ, primary_key=True),
        sa.Column("log_id", sa.String(36), nullable=False, unique=True),
        sa.Column("destination_id", sa.String(36), nullable=False, index=True),
        sa.Column("lane", sa.String(600), nullable=False),
        sa.Column("is_head", sa.Boolean, nullable=False),
        sa.Column("held", sa.Boolean, nullable=False),
        sa.Column("due_at", sa.String(32), nullable=False),
        sa.Column("lease_until", sa.String(32), nullable=True),
        sa.Column("lease_owner", sa.String(36), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_id", sa.String(36), nullable=False),
        sa.Column("enqueued_at", sa.String(32), nullable=False),
        sa.Index("ix_outbox_lane_seq", "lane", "seq"),
        sa.Index(
            "ix_outbox_ready",
            "due_at",
            "seq",
            sqlite_where=sa.text("is_head AND NOT held"),
            postgresql_where=sa.text("is_head AND NOT held"),
        ),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("source_id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False, index=True),
    )


def downgrade() -> None:
    for table in ("idempotency_keys", "outbox", "attempts", "logs", "messages", "subscriptions"):
        op.drop_table(table)
