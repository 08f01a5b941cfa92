"""Who is calling: the bearer token resolved to a user, afresh on every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from waypost import clock
from waypost.auth.tables import api_tokens
from waypost.crypto import hash_api_token
from waypost.db import Prepared
from waypost.http import Unauthorized
from waypost.organizations.tables import users
from waypost.runtime import runtime


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, and where the call came from (for the audit trail)."""

    user_id: str
    organization_id: int
    org_role: str
    request_ip: str | None = None
    route: str | None = None


_principal_query = Prepared(
    sa.select(users.c.id, users.c.organization_id, users.c.org_role)
    .select_from(api_tokens.join(users, users.c.id == api_tokens.c.user_id))
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
    .where(api_tokens.c.revoked_at.is_(None))
    .where(sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > sa.bindparam("now")))
)


class BearerAuth(HTTPBearer):
    """The security scheme in OpenAPI and the check itself, in one dependency: every
    request looks its token up again, so a revoked token fails on the next request."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an API token as `Authorization: Bearer <token>`.")
        params = {"token_hash": hash_api_token(token.strip()), "now": clock.now()}
        async with runtime(request).db.read() as conn:
            row = await conn.first(_principal_query, params)
        if row is None:
            raise Unauthorized("The bearer token is unknown, expired or revoked.")
        route = request.scope.get("route")
        return Principal(
            user_id=row["id"],
            organization_id=row["organization_id"],
            org_role=row["org_role"],
            request_ip=request.client.host if request.client else None,
            route=f"{request.method} {route.path}" if route else request.url.path,
        )


CurrentPrincipal = Annotated[
    Principal,
    Depends(BearerAuth(description="An API token from `waypost tokens create`.")),
]
