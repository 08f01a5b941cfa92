import sqlalchemy as sa

from waypost.db import metadata

auth_credentials = sa.Table(
    "auth_credentials",
    metadata,
    # Creation order, for listing; `id` is the public identifier.
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
    sa.Column("auth_strategy", sa.String(32), nullable=False),
    # The non-secret fields as the client sent them, under Redox's names.
    sa.Column("settings", sa.JSON, nullable=False),
    # Secret field name -> AES-GCM ciphertext (waypost.crypto), bound to this row and field.
    sa.Column("secrets", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # What destinations refer to: a credential of their own environment.
    sa.UniqueConstraint("id", "environment_id", name="uq_auth_credentials_id_environment_id"),
)
