"""Every statement on API tokens and registered key sets, answering typed rows. The token
lookup selects the user's organization and role too, through organizations' `identity_of`
(the hot path of every request, in one statement)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waypost.access import Identity
from waypost.auth.tables import api_client_keys, api_clients, api_tokens
from waypost.db import Connection, Prepared
from waypost.organizations.service import identity_from, identity_of


@dataclass(frozen=True, slots=True)
class NewToken:
    id: str
    user_id: str
    token_hash: str
    created_at: str
    expires_at: str | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class KeySet:
    client_id: str
    created_at: str
    revoked_at: str | None
    kids: list[str]


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    jwk: dict[str, Any]
    user_id: str


_insert_token = Prepared(api_tokens.insert())
_live_token_identity = Prepared(
    identity_of(api_tokens.c.user_id)
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
    .where(api_tokens.c.revoked_at.is_(None))
    .where(sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > sa.bindparam("now")))
)
_key = Prepared(
    sa.select(api_client_keys.c.jwk, api_clients.c.user_id)
    .join(api_clients, api_clients.c.id == api_client_keys.c.client_id)
    .where(
        api_client_keys.c.client_id == sa.bindparam("client_id"),
        api_client_keys.c.kid == sa.bindparam("kid"),
        api_clients.c.revoked_at.is_(None),
    )
)


async def insert_token(conn: Connection, token: NewToken) -> None:
    await conn.run(
        _insert_token,
        {
            "id": token.id,
            "user_id": token.user_id,
            "token_hash": token.token_hash,
            "created_at": token.created_at,
            "expires_at": token.expires_at,
            "client_id": token.client_id,
        },
    )


async def live_token_identity(conn: Connection, *, token_hash: str, now: str) -> Identity | None:
    """The user behind a token that is neither revoked nor expired."""
    row = await conn.first(_live_token_identity, {"token_hash": token_hash, "now": now})
    return None if row is None else identity_from(row)


async def revoke_token(conn: Connection, *, token_id: str, at: str) -> str | None:
    """Revokes a live token; answers its user id, or None when no live token has this id."""
    user_id: str | None = await conn.scalar(
        api_tokens.update()
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=at)
        .returning(api_tokens.c.user_id)
    )
    return user_id


async def insert_key_set(
    conn: Connection, *, client_id: str, user_id: str, created_at: str, keys: list[dict[str, Any]]
) -> None:
    await conn.execute(
        api_clients.insert(), {"id": client_id, "user_id": user_id, "created_at": created_at}
    )
    await conn.execute(
        api_client_keys.insert(),
        [{"client_id": client_id, "kid": jwk["kid"], "jwk": jwk} for jwk in keys],
    )


async def key_sets(conn: Connection, *, user_id: str) -> list[KeySet]:
    rows = (
        await conn.execute(
            sa.select(api_clients, api_client_keys.c.kid)
            .outerjoin(api_client_keys, api_client_keys.c.client_id == api_clients.c.id)
            .where(api_clients.c.user_id == user_id)
            .order_by(api_clients.c.created_at, api_client_keys.c.kid)
        )
    ).all()
    sets: dict[str, KeySet] = {}
    for r in rows:
        found = sets.setdefault(r.id, KeySet(r.id, r.created_at, r.revoked_at, []))
        if r.kid is not None:
            found.kids.append(r.kid)
    return list(sets.values())


async def revoke_key_set(conn: Connection, *, client_id: str, at: str) -> str | None:
    """Revokes a live key set and the live tokens it issued; answers its user id, or None
    when no live key set has this client id."""
    user_id: str | None = await conn.scalar(
        api_clients.update()
        .where(api_clients.c.id == client_id, api_clients.c.revoked_at.is_(None))
        .values(revoked_at=at)
        .returning(api_clients.c.user_id)
    )
    if user_id is not None:
        await conn.execute(
            api_tokens.update()
            .where(api_tokens.c.client_id == client_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
    return user_id


async def registered_key(conn: Connection, *, client_id: str, kid: str) -> RegisteredKey | None:
    row = await conn.first(_key, {"client_id": client_id, "kid": kid})
    return None if row is None else RegisteredKey(row["jwk"], row["user_id"])
