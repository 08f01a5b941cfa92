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
    name: str | None = None


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as `waypost tokens list` shows it: never the token, nor its hash."""

    id: str
    name: str | None
    created_at: str
    last_used_at: str | None
    expires_at: str | None  # platform tokens (the JWT exchange) only
    revoked_at: str | None
    client_id: str | None  # the key set that earned a platform token


@dataclass(frozen=True, slots=True)
class LiveToken:
    """A live token's user, and what keeps its last-used time."""

    identity: Identity
    token_id: str
    last_used_at: str | None


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
    .add_columns(api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at)
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
            "name": token.name,
        },
    )


async def live_token_identity(conn: Connection, *, token_hash: str, now: str) -> Identity | None:
    """The user behind a token that is neither revoked nor expired."""
    row = await conn.first(_live_token_identity, {"token_hash": token_hash, "now": now})
    return None if row is None else identity_from(row)


async def live_token(conn: Connection, *, token_hash: str, now: str) -> LiveToken | None:
    """`live_token_identity`, with the token's id and last-used time."""
    row = await conn.first(_live_token_identity, {"token_hash": token_hash, "now": now})
    if row is None:
        return None
    return LiveToken(identity_from(row), row["token_id"], row["last_used_at"])


_touch_token = Prepared(
    api_tokens.update()
    .where(
        api_tokens.c.id == sa.bindparam("token_id"),
        sa.or_(
            api_tokens.c.last_used_at.is_(None),
            api_tokens.c.last_used_at < sa.bindparam("stale_before"),
        ),
    )
    .values(last_used_at=sa.bindparam("now"))
)


async def touch_token(conn: Connection, *, token_id: str, now: str, stale_before: str) -> None:
    """Sets a token's last-used time, unless another request did since `stale_before`."""
    await conn.run(_touch_token, {"token_id": token_id, "now": now, "stale_before": stale_before})


async def tokens_of(conn: Connection, *, user_id: str) -> list[TokenRow]:
    """Every token of a user, oldest first."""
    query = (
        sa.select(
            api_tokens.c.id,
            api_tokens.c.name,
            api_tokens.c.created_at,
            api_tokens.c.last_used_at,
            api_tokens.c.expires_at,
            api_tokens.c.revoked_at,
            api_tokens.c.client_id,
        )
        .where(api_tokens.c.user_id == user_id)
        .order_by(api_tokens.c.created_at, api_tokens.c.id)
    )
    return [
        TokenRow(
            r.id, r.name, r.created_at, r.last_used_at, r.expires_at, r.revoked_at, r.client_id
        )
        for r in (await conn.execute(query)).all()
    ]


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
