"""Who is calling: the bearer token resolved to a user, afresh on every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from waypost.auth.tables import api_tokens
from waypost.crypto import hash_api_token
from waypost.db import Database
from waypost.http import Unauthorized
from waypost.organizations.tables import users


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    organization_id: int
    org_role: str


_bearer = HTTPBearer(auto_error=False, description="An API token from `waypost tokens create`.")

_principal_query = (
    sa.select(users.c.id, users.c.organization_id, users.c.org_role)
    .select_from(api_tokens.join(users, users.c.id == api_tokens.c.user_id))
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
    .where(api_tokens.c.revoked_at.is_(None))
)


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("Send an API token as `Authorization: Bearer <token>`.")
    db = database(request)
    async with db.read() as conn:
        row = (
            await conn.execute(
                _principal_query, {"token_hash": hash_api_token(credentials.credentials)}
            )
        ).first()
    if row is None:
        raise Unauthorized("The bearer token is unknown or revoked.")
    return Principal(user_id=row.id, organization_id=row.organization_id, org_role=row.org_role)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
Db = Annotated[Database, Depends(database)]
