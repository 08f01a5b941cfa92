import sqlalchemy as sa

from waypost.db import metadata

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "user_id",
        sa.String(36),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # Only the SHA-256 of the token is kept; the token itself is shown once.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32), nullable=True),
    # Set for the five-minute tokens that /v2/auth/token issues; API tokens never expire.
    sa.Column("expires_at", sa.String(32), nullable=True),
    # The key set whose assertion earned a platform token; revoking it revokes them.
    sa.Column("client_id", sa.String(36), nullable=True, index=True),
    # What the token is for, as its maker named it (none for platform tokens).
    sa.Column("name", sa.String(255), nullable=True),
    # When a request last used it, to the minute (touched at most once a minute).
    sa.Column("last_used_at", sa.String(32), nullable=True),
)

# A user's registered public keys ("User API Keys" at Redox): the client id is the JWT's
# iss and sub, and each key is picked by the JWT header's kid.
api_clients = sa.Table(
    "api_clients",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32), nullable=True),
)

api_client_keys = sa.Table(
    "api_client_keys",
    metadata,
    sa.Column(
        "client_id",
        sa.String(36),
        sa.ForeignKey("api_clients.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("kid", sa.String(255), primary_key=True),
    sa.Column("jwk", sa.JSON, nullable=False),  # the public key only
)

# Each client assertion's jti is accepted once; rows can go once the JWT is too old anyway.
used_assertions = sa.Table(
    "used_assertions",
    metadata,
    sa.Column("client_id", sa.String(36), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires_at", sa.String(32), nullable=False, index=True),
)
