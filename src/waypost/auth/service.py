"""Credentials that let a caller in: API tokens (issued once, stored as hashes,
revocable), registered public keys, and Redox's JWT exchange for five-minute tokens."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from waypost import clock
from waypost.audit.service import Actor, Event, record

# The client-assertion checks live in one place, shared with sources; these names stay
# importable from here.
from waypost.auth.assertions import (
    CLIENT_ASSERTION_TYPE,
    KEY_NOT_FOUND,
    InvalidKeys,
    TokenError,
    allowed_algorithms,
    check_jwks,
    check_token_request,
    public_key,
    read_assertion,
    refuse,
    remember_jti,
    verify_assertion,
)
from waypost.auth.tables import api_client_keys, api_clients, api_tokens
from waypost.crypto import hash_api_token, new_api_token
from waypost.db import Connection, Database, canonical_id, new_id
from waypost.organizations.tables import users

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "InvalidKeys",
    "TokenError",
    "check_jwks",
    "check_token_request",
]

PLATFORM_TOKEN_SECONDS = 300  # Redox's access tokens last five minutes


class UnknownError(LookupError):
    """An id given on the command line names nothing."""


def _cli(organization_id: int, command: str) -> Actor:
    return Actor(organization_id, route=f"cli: waypost {command}")


async def _user(conn: Connection, user_id: str) -> Any:
    key = canonical_id(user_id)
    row = None
    if key is not None:
        row = (await conn.execute(sa.select(users).where(users.c.id == key))).first()
    if row is None:
        raise UnknownError(f"no user with id {user_id}")
    return row


async def issue_token(
    conn: Connection, user_id: str, *, expires_at: str | None = None, client_id: str | None = None
) -> tuple[str, str]:
    """Returns (token id, token). The token itself is never stored."""
    token = new_api_token()
    token_id = new_id()
    await conn.execute(
        api_tokens.insert(),
        {
            "id": token_id,
            "user_id": user_id,
            "token_hash": hash_api_token(token),
            "created_at": clock.now(),
            "expires_at": expires_at,
            "client_id": client_id,
        },
    )
    return token_id, token


async def create_token(db: Database, user_id: str) -> tuple[str, str]:
    async with db.write() as conn:
        user = await _user(conn, user_id)
        token_id, token = await issue_token(conn, user.id)
        await record(
            conn,
            _cli(user.organization_id, "tokens create"),
            Event("api-token-created", {"userId": user.id, "tokenId": token_id}),
        )
        return token_id, token


async def revoke_token(db: Database, token_id: str) -> None:
    async with db.write() as conn:
        row = (
            await conn.execute(
                sa.select(api_tokens.c.user_id, users.c.organization_id)
                .join(users, users.c.id == api_tokens.c.user_id)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            raise UnknownError(f"no active token with id {token_id}")
        await conn.execute(
            api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=clock.now())
        )
        await record(
            conn,
            _cli(row.organization_id, "tokens revoke"),
            Event("api-token-revoked", {"userId": row.user_id, "tokenId": token_id}),
        )


async def register_keys(db: Database, user_id: str, keys: list[dict[str, Any]]) -> str:
    """Registers a public key set for a user; returns its client id."""
    client_id = new_id()
    async with db.write() as conn:
        user = await _user(conn, user_id)
        await conn.execute(
            api_clients.insert(), {"id": client_id, "user_id": user.id, "created_at": clock.now()}
        )
        await conn.execute(
            api_client_keys.insert(),
            [{"client_id": client_id, "kid": jwk["kid"], "jwk": jwk} for jwk in keys],
        )
        await record(
            conn,
            _cli(user.organization_id, "keys create"),
            Event(
                "api-key-created",
                {"userId": user.id, "clientId": client_id, "kids": [k["kid"] for k in keys]},
            ),
        )
    return client_id


async def list_keys(db: Database, user_id: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        user = await _user(conn, user_id)
        rows = (
            await conn.execute(
                sa.select(api_clients, api_client_keys.c.kid)
                .outerjoin(api_client_keys, api_client_keys.c.client_id == api_clients.c.id)
                .where(api_clients.c.user_id == user.id)
                .order_by(api_clients.c.created_at, api_client_keys.c.kid)
            )
        ).all()
    clients: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = clients.setdefault(
            r.id,
            {"clientId": r.id, "createdAt": r.created_at, "revokedAt": r.revoked_at, "kids": []},
        )
        if r.kid is not None:
            entry["kids"].append(r.kid)
    return list(clients.values())


async def revoke_keys(db: Database, client_id: str) -> None:
    """Revokes a key set and the platform tokens it issued that are still live."""
    async with db.write() as conn:
        row = (
            await conn.execute(
                sa.select(api_clients.c.user_id, users.c.organization_id)
                .join(users, users.c.id == api_clients.c.user_id)
                .where(api_clients.c.id == client_id, api_clients.c.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            raise UnknownError(f"no active key set with client id {client_id}")
        revoked = clock.now()
        await conn.execute(
            api_clients.update().where(api_clients.c.id == client_id).values(revoked_at=revoked)
        )
        await conn.execute(
            api_tokens.update()
            .where(api_tokens.c.client_id == client_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=revoked)
        )
        await record(
            conn,
            _cli(row.organization_id, "keys revoke"),
            Event("api-key-revoked", {"userId": row.user_id, "clientId": client_id}),
        )


_key_query = (
    sa.select(api_client_keys.c.jwk, api_clients.c.user_id, users.c.organization_id)
    .join(api_clients, api_clients.c.id == api_client_keys.c.client_id)
    .join(users, users.c.id == api_clients.c.user_id)
    .where(
        api_client_keys.c.client_id == sa.bindparam("client_id"),
        api_client_keys.c.kid == sa.bindparam("kid"),
        api_clients.c.revoked_at.is_(None),
    )
)


async def exchange_assertion(
    db: Database, assertion: str, audience: str, request_ip: str | None
) -> str:
    """Verifies a client assertion (a JWT signed by a registered key) and issues a
    five-minute bearer token for the key's user."""
    claimed = read_assertion(assertion)
    client_id, kid = claimed.client_id, claimed.kid
    async with db.read() as conn:
        key_row = (await conn.execute(_key_query, {"client_id": client_id, "kid": kid})).first()
    if key_row is None:
        raise refuse(KEY_NOT_FOUND)
    moment = clock.utcnow()
    allowed = allowed_algorithms(key_row.jwk)
    claims = verify_assertion(claimed, public_key(key_row.jwk), allowed, audience, moment)
    expires_at = clock.after(PLATFORM_TOKEN_SECONDS, moment)
    async with db.write() as conn:
        await remember_jti(conn, client_id, claims["jti"], moment)
        token_id, token = await issue_token(
            conn, key_row.user_id, expires_at=expires_at, client_id=client_id
        )
        await record(
            conn,
            Actor(key_row.organization_id, key_row.user_id, request_ip, "POST /v2/auth/token"),
            Event(
                "platform-token-issued",
                {"clientId": client_id, "kid": kid, "tokenId": token_id, "expiresAt": expires_at},
            ),
        )
    return token
