import sqlalchemy as sa

from waypost.db import metadata

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    # Generated here (UUIDv7); no unique index, which would cost every write a page.
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("organization_id", sa.Integer, nullable=False),
    # Null when the command line made the change.
    sa.Column("user_id", sa.String(36), nullable=True),
    sa.Column("request_ip", sa.String(64), nullable=True),
    sa.Column("route", sa.String(255), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    # Searches filter by organization and read newest first.
    sa.Index("ix_audit_events_org_seq", "organization_id", "seq"),
)
