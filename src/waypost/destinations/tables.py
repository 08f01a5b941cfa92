import sqlalchemy as sa

from waypost.db import metadata

destinations = sa.Table(
    "destinations",
    metadata,
    # Creation order, for listing and cursors; `id` is the public identifier.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column(
        "environment_id",
        sa.String(36),
        sa.ForeignKey("environments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("endpoint", sa.String(2048), nullable=True),
    sa.Column("cloud_provider_settings", sa.JSON, nullable=True),
    sa.Column("setup_state", sa.JSON, nullable=True),
    sa.Column("auth_credential_id", sa.String(36), nullable=True, index=True),
    # AES-GCM ciphertext (waypost.crypto); the plaintext is never stored.
    sa.Column("verification_token", sa.Text, nullable=True),
    sa.Column("verification_method", sa.String(8), nullable=True),
    sa.Column("verified", sa.Boolean, nullable=False, default=False),
    # The last handshake: "verified" or "failed", when, and (on failure) why.
    sa.Column("verification_status", sa.String(16), nullable=True),
    sa.Column("verification_checked_at", sa.String(32), nullable=True),
    sa.Column("verification_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # Delivery settings as the client gave them; null means every default.
    sa.Column("delivery", sa.JSON, nullable=True),
    # The database guarantees the credential exists and is of this destination's
    # environment, and refuses to delete one in use.
    sa.ForeignKeyConstraint(
        ["auth_credential_id", "environment_id"],
        ["auth_credentials.id", "auth_credentials.environment_id"],
        name="fk_destinations_auth_credential_auth_credentials",
        ondelete="RESTRICT",
    ),
    # Lists page an environment's destinations in creation order, by keyset on seq: the
    # index walks straight to the page, however deep, at any number of destinations.
    sa.Index("ix_destinations_environment_seq", "environment_id", "seq"),
)
