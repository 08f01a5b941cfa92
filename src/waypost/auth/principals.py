"""Who is calling: the bearer token resolved to a user, afresh on every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from waypost.auth.tables import api_tokens
from waypost.crypto import hash_api_token
from waypost.http import Unauthorized
from waypost.organizations.tables import users
from waypost.runtime import runtime


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    organization_id: int
    org_role: str


_principal_query = (
    sa.select(users.c.id, users.c.organization_id, users.c.org_role)
    .select_from(api_tokens.join(users, users.c.id == api_tokens.c.user_id))
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
    .where(api_tokens.c.revoked_at.is_(None))
)


class BearerAuth(HTTPBearer):
    """The security scheme in OpenAPI and the check itself, in one dependency: every
    request looks its token up again, so a revoked token fails on the next request."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an API token as `Authorization: Bearer <token>`.")
        async with runtime(request).db.read() as conn:
            row = (
                await conn.execute(_principal_query, {"token_hash": hash_api_token(token.strip())})
            ).first()
        if row is None:
            raise Unauthorized("The bearer token is unknown or revoked.")
        return Principal(user_id=row.id, organization_id=row.organization_id, org_role=row.org_role)


CurrentPrincipal = Annotated[
    Principal,
    Depends(BearerAuth(description="An API token from `waypost tokens create`.")),
]
