import sqlalchemy as sa

from waypost.db import metadata

# What may go where: a (source, destination, data model) triple.
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
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
    # As given (e.g. "Clinical Summary"), and the form routing matches on: without
    # spaces, since clients send both "Clinical Summary" and "ClinicalSummary".
    sa.Column("data_model", sa.String(255), nullable=False),
    sa.Column("data_model_key", sa.String(255), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    # Routing looks up (source, data model); the triple is unique.
    sa.UniqueConstraint(
        "source_id", "data_model_key", "destination_id", name="uq_subscriptions_triple"
    ),
)
