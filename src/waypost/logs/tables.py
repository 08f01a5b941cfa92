import sqlalchemy as sa

from waypost.db import metadata

# A message as its source sent it; each destination's log points at it.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("environment_id", sa.String(36), nullable=False),
    sa.Column("source_id", sa.String(36), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the JSON as accepted
    sa.Column("created_at", sa.String(32), nullable=False),
)

# One log per message and destination (Redox's model). Names are copied in: a log tells
# what happened even after its source or destination is renamed or deleted.
logs = sa.Table(
    "logs",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
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
    sa.Column("type", sa.String(16), nullable=False),  # send | request
    sa.Column("status", sa.String(16), nullable=False),  # pending | succeeded | failed
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
    # A synchronous query's answer, kept like a payload.
    sa.Column("response", sa.Text, nullable=True),
    # For a cloud destination, the blob the message was written to (alone or in a batch).
    sa.Column("file_name", sa.String(1024), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # Searches are newest first within an environment, by keyset on seq.
    sa.Index("ix_logs_environment_seq", "environment_id", "seq"),
    sa.Index("ix_logs_destination_seq", "destination_id", "seq"),
    sa.Index("ix_logs_environment_status_seq", "environment_id", "status", "seq"),
    # A destination's failed (or pending) logs: the search by destination and status
    # walks only those, not every log the destination ever had.
    sa.Index("ix_logs_destination_status_seq", "destination_id", "status", "seq"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column(
        "log_id",
        sa.String(36),
        sa.ForeignKey("logs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt_at", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # succeeded | failed
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    # A log's attempts in order, however many retries a failing receiver has cost it.
    sa.Index("ix_attempts_log_seq", "log_id", "seq"),
)
