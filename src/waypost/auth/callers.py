"""The bearer token's lookup folded into a hot route's own statement: one round trip
finds the resource, checks the caller's role there and authenticates the request.

A route takes a `CurrentCaller` (the token, not yet looked up), builds its statement
with `by_token` around organizations' `with_environment(caller_user=...)`, and hands each
row it reads to a `Lookup`, which identifies the caller (their `Principal`) and notes the
token's use as `authenticate` does. When the statement finds nothing, the token alone is
looked up, to tell a 401 (no live token) from a 404 (nothing visible): the rare path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from waypost import clock
from waypost.access import NOT_LIVE, Action, Caller, Principal
from waypost.auth import service
from waypost.auth.store import LiveToken
from waypost.auth.tables import api_tokens
from waypost.crypto import hash_api_token
from waypost.db import Connection, Database, Prepared, canonical_id
from waypost.http import Unauthorized
from waypost.organizations.service import (
    EnvironmentAccess,
    access_from,
    caller_from,
    checked_access,
    environment_with_role_of,
)


def by_token(build: Callable[[sa.ColumnElement[str]], sa.Select[Any]]) -> sa.Select[Any]:
    """The statement `build` makes for a caller named by a column, for the user behind
    the live token `token_hash` (parameters `token_hash` and `now`, as `Lookup` gives
    them), with the token's id and last use."""
    return (
        build(api_tokens.c.user_id)
        .add_columns(
            api_tokens.c.id.label("caller_token_id"),
            api_tokens.c.last_used_at.label("caller_last_used_at"),
        )
        .where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
        .where(api_tokens.c.revoked_at.is_(None))
        .where(
            sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > sa.bindparam("now"))
        )
    )


class Lookup:
    """One request's token lookup, riding on the statement that finds its resource."""

    __slots__ = ("_moment", "caller", "parameters")

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self._moment = clock.utcnow()
        self.parameters = {
            "token_hash": hash_api_token(caller.token),
            "now": clock.format(self._moment),
        }

    def _identified(self, row: Mapping[str, Any]) -> LiveToken:
        found = LiveToken(caller_from(row), row["caller_token_id"], row["caller_last_used_at"])
        self.caller.identified(found.identity)
        return found

    async def settle(self, db: Database, row: Mapping[str, Any] | None) -> Principal:
        """After the read that gave `row` (None: it found nothing): who is calling."""
        if row is None:
            identity = await service.authenticate(db, self.caller.token)
            if identity is None:
                raise Unauthorized(NOT_LIVE)
            return self.caller.identified(identity)
        found = self._identified(row)
        stale_before = service.stale_use(found, self._moment)
        if stale_before is not None:
            async with db.write() as conn:
                await service.note_use(conn, found, self._moment, stale_before)
        return self.caller.identified(found.identity)

    async def settle_within(self, conn: Connection, row: Mapping[str, Any] | None) -> Principal:
        """As `settle`, inside the write transaction that read `row`."""
        if row is None:
            found = await service.live_token(conn, self.caller.token, self._moment)
            if found is None:
                raise Unauthorized(NOT_LIVE)
        else:
            found = self._identified(row)
        stale_before = service.stale_use(found, self._moment)
        if stale_before is not None:
            await service.note_use(conn, found, self._moment, stale_before)
        return self.caller.identified(found.identity)


_environment_with_role = Prepared(by_token(environment_with_role_of))


async def environment_access(
    conn: Connection, lookup: Lookup, environment_id: str, action: Action, *, what: str
) -> EnvironmentAccess:
    """organizations' `environment_access` and the token's lookup in one statement,
    inside the caller's write transaction."""
    key = canonical_id(environment_id)
    row = None
    if key is not None:
        row = await conn.first(_environment_with_role, {**lookup.parameters, "environment_id": key})
    await lookup.settle_within(conn, row)
    return checked_access(None if row is None else access_from(row), action, what=what)
