"""Auth's half of `access.CurrentPrincipal`: a bearer token resolved to its user."""

from __future__ import annotations

import sqlalchemy as sa

from waypost import clock
from waypost.access import Identity
from waypost.auth.tables import api_tokens
from waypost.crypto import hash_api_token
from waypost.db import Database, Prepared
from waypost.organizations.tables import users

_principal_query = Prepared(
    sa.select(users.c.id, users.c.organization_id, users.c.org_role)
    .select_from(api_tokens.join(users, users.c.id == api_tokens.c.user_id))
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
    .where(api_tokens.c.revoked_at.is_(None))
    .where(sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > sa.bindparam("now")))
)


async def authenticate(db: Database, token: str) -> Identity | None:
    params = {"token_hash": hash_api_token(token), "now": clock.now()}
    async with db.read() as conn:
        row = await conn.first(_principal_query, params)
    if row is None:
        return None
    return Identity(row["id"], row["organization_id"], row["org_role"])
