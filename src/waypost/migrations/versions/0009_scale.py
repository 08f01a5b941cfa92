"""Several processes and growing tables: the rate limit's counts and the credentials'
access tokens move into the database, and the indexes the hot queries need at millions
of rows.

Additive only: processes of the previous version keep serving while it runs (they do
not read the new tables, and the index it drops is covered by the one built first).
Each index is created IF NOT EXISTS, so on a large PostgreSQL database an operator can
build it first with CREATE INDEX CONCURRENTLY under the same name (see the README) and
this migration then skips it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_windows",
        sa.Column("period", sa.BigInteger, primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("granted", sa.Integer, nullable=False),
    )
    op.create_table(
        "credential_tokens",
        sa.Column("credential_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("renew_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_destinations_environment_seq",
        "destinations",
        ["environment_id", "seq"],
        if_not_exists=True,
    )
    # Its first column leads the new index, which serves every query it served (so
    # for ix_attempts_log_id below).
    op.drop_index("ix_destinations_environment_id", table_name="destinations")
    op.create_index(
        "ix_logs_destination_status_seq",
        "logs",
        ["destination_id", "status", "seq"],
        if_not_exists=True,
    )
    op.create_index("ix_attempts_log_seq", "attempts", ["log_id", "seq"], if_not_exists=True)
    op.drop_index("ix_attempts_log_id", table_name="attempts")
    op.create_index(
        "ix_outbox_leased",
        "outbox",
        ["lease_until"],
        sqlite_where=sa.text("lease_until IS NOT NULL"),
        postgresql_where=sa.text("lease_until IS NOT NULL"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_leased", table_name="outbox")
    op.create_index("ix_attempts_log_id", "attempts", ["log_id"])
    op.drop_index("ix_attempts_log_seq", table_name="attempts")
    op.drop_index("ix_logs_destination_status_seq", table_name="logs")
    op.create_index("ix_destinations_environment_id", "destinations", ["environment_id"])
    op.drop_index("ix_destinations_environment_seq", table_name="destinations")
    op.drop_table("credential_tokens")
    op.drop_table("rate_limit_windows")
