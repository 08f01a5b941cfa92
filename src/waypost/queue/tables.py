import sqlalchemy as sa

from waypost.db import metadata

# What is still to send, and nothing else: a delivered or failed message leaves this table,
# so claiming costs the same at a million delivered logs as at zero. The history lives in
# the logs feature.
outbox = sa.Table(
    "outbox",
    metadata,
    # Acceptance order: the order within a lane.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("log_id", sa.String(36), nullable=False, unique=True),
    sa.Column("destination_id", sa.String(36), nullable=False, index=True),
    # The unit of order: the destination (fifo), the destination and an ordering key's
    # value (fifo with orderingKey), or the message itself (unordered).
    sa.Column("lane", sa.String(600), nullable=False),
    # The oldest row of its lane; only heads are ever claimed, so a lane has at most one
    # message in flight, and a head waiting for its retry holds the lane behind it.
    sa.Column("is_head", sa.Boolean, nullable=False),
    # Set while the destination's receiver is unproven (its endpoint or token changed).
    sa.Column("held", sa.Boolean, nullable=False),
    sa.Column("due_at", sa.String(32), nullable=False),
    # A claim: which worker holds the row, and until when (a dead worker's claim expires).
    sa.Column("lease_until", sa.String(32), nullable=True),
    sa.Column("lease_owner", sa.String(36), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    # The id the next attempt will carry (the first one is in the send API's answer).
    sa.Column("next_attempt_id", sa.String(36), nullable=False),
    sa.Column("enqueued_at", sa.String(32), nullable=False),
    # A batch's head: how many rows its first attempt took, so that a retry writes the
    # same file (same name, same lines). Null until then, and for messages sent alone.
    sa.Column("batch_size", sa.Integer, nullable=True),
    sa.Index("ix_outbox_lane_seq", "lane", "seq"),
    # The claim's index holds only lane heads that may go.
    sa.Index(
        "ix_outbox_ready",
        "due_at",
        "seq",
        sqlite_where=sa.text("is_head AND NOT held"),
        postgresql_where=sa.text("is_head AND NOT held"),
    ),
    # The claims in flight, for the earliest lease to run out (the worker's next wake-up);
    # only leased rows are in it, so a backlog of waiting rows costs it nothing.
    sa.Index(
        "ix_outbox_leased",
        "lease_until",
        sqlite_where=sa.text("lease_until IS NOT NULL"),
        postgresql_where=sa.text("lease_until IS NOT NULL"),
    ),
)
