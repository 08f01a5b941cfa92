"""What the processes of one installation share through the database rather than keep in
memory: the rate limit's counts and the auth credentials' access tokens. Both are
caches: losing their rows costs a recount or a token fetch, never a wrong answer."""

import sqlalchemy as sa

from waypost.db import metadata

# Requests counted per client address and fixed window (`period`, the window's number
# since the epoch); the sliding window weighs the previous one in. Processes take the
# budget in leases (waypost.ratelimit): `count` is what has been handed out, `granted`
# what the latest lease got. Periods before the previous one are deleted; the period
# leads the primary key, so that is a range of it.
rate_limit_windows = sa.Table(
    "rate_limit_windows",
    metadata,
    sa.Column("period", sa.BigInteger, primary_key=True),
    sa.Column("client", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("granted", sa.Integer, nullable=False),
)

# One access token per auth credential, sealed (waypost.crypto, bound to the credential),
# for every process to use until shortly before it expires; `version` is the credential's
# updatedAt when the token was fetched, so any edit makes the next use fetch again.
credential_tokens = sa.Table(
    "credential_tokens",
    metadata,
    sa.Column("credential_id", sa.String(36), primary_key=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("renew_at_ms", sa.BigInteger, nullable=False),  # milliseconds since the epoch
)
