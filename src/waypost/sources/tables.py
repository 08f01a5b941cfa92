import sqlalchemy as sa

from waypost.db import metadata

# Who sends: one row per source. A source authenticates with a legacy API key (its id
# and a secret) or with an OAuth API key (a JWKS, given inline or as a URL); never both.
sources = sa.Table(
    "sources",
    metadata,
    # Creation order, for listing; `id` is the public identifier (the client id).
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
    # Legacy key: SHA-256 of the secret, for /auth/authenticate; and the secret sealed
    # (AES-GCM, bound to the source) because HS384 assertions are signed with it.
    sa.Column("secret_hash", sa.String(64), nullable=True),
    sa.Column("secret_sealed", sa.Text, nullable=True),
    # The secret a rotation replaced keeps working until previous_secret_expires_at.
    sa.Column("previous_secret_hash", sa.String(64), nullable=True),
    sa.Column("previous_secret_sealed", sa.Text, nullable=True),
    sa.Column("previous_secret_expires_at", sa.String(32), nullable=True),
    # OAuth key: the public keys, inline (jwk_set) or fetched from jwks_url.
    sa.Column("jwks_url", sa.String(2048), nullable=True),
    # SQL NULL, not JSON null, when there is no inline set: lists filter on it.
    sa.Column("jwk_set", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

# Tokens a source sends with: only their SHA-256 is kept. Access tokens open the send
# API; a refresh token (legacy keys) buys one new pair and is then gone.
source_tokens = sa.Table(
    "source_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "source_id",
        sa.String(36),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("kind", sa.String(8), nullable=False),  # "access" | "refresh"
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=False),
)
