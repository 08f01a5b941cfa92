"""Access tokens of auth credentials, kept until shortly before they expire.

One token per credential, shared by every destination that uses it and by every process
of the installation: a token one process fetched is in the database
(`credential_tokens`, sealed with the secret key and bound to its credential), and the
other processes use it rather than fetch their own. Each process also keeps the tokens
it has seen in memory, so a delivery costs no extra round trip.

An entry is valid only for the credential as it was when the token was fetched (its
`updatedAt`), so any edit makes the next caller fetch again. Concurrent callers in one
process share one fetch; two processes missing at the same moment may each fetch one
(the later one is kept). `forget` (a receiver refused the token, the credential went
away) drops it from the database too, so no process hands that token out again; a
process still holding it in memory drops it on its own first refusal, and then finds the
new one in the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from sqlalchemy.dialects import postgresql, sqlite

from waypost.crypto import SecretBox, SecretKeyError
from waypost.db import Database, Prepared
from waypost.runtime.tables import credential_tokens as stored

# A token is renewed this long before it expires (at most a tenth of its lifetime).
RENEW_BEFORE_SECONDS = 60.0


@dataclass(frozen=True)
class Token:
    value: str
    expires_in: int  # seconds, as granted
    status: int = 200  # the token server's answer


@dataclass(frozen=True)
class _Entry:
    version: str
    token: str
    renew_at: float  # seconds since the epoch: every process reads the same clock


def _context(credential_id: str) -> str:
    return f"credential-token:{credential_id}"


def _save_statement(insert: postgresql.Insert | sqlite.Insert) -> Prepared:
    # A slower fetch for an older version must not replace a newer one.
    return Prepared(
        insert.on_conflict_do_update(
            index_elements=[stored.c.credential_id],
            set_={
                "version": insert.excluded.version,
                "token": insert.excluded.token,
                "renew_at_ms": insert.excluded.renew_at_ms,
            },
            where=stored.c.version <= insert.excluded.version,
        )
    )


_SAVE = {
    "postgresql": _save_statement(postgresql.insert(stored)),
    "sqlite": _save_statement(sqlite.insert(stored)),
}
_load = Prepared(
    sa.select(stored.c.version, stored.c.token, stored.c.renew_at_ms).where(
        stored.c.credential_id == sa.bindparam("credential_id")
    )
)
_forget = Prepared(stored.delete().where(stored.c.credential_id == sa.bindparam("credential_id")))


class SharedTokens:
    """The tokens in the database, sealed; what every process of an installation sees."""

    def __init__(self, db: Database, box: Callable[[], SecretBox]) -> None:
        self._db = db
        self._box = box
        self._save = _SAVE[db.dialect]

    async def load(self, credential_id: str) -> _Entry | None:
        async with self._db.read() as conn:
            row = await conn.first(_load, {"credential_id": credential_id})
        if row is None:
            return None
        try:
            token = self._box().decrypt(row["token"], _context(credential_id))
        except (InvalidTag, SecretKeyError, ValueError):
            return None  # sealed with a key no longer configured: fetch a new one
        return _Entry(row["version"], token, row["renew_at_ms"] / 1000)

    async def save(self, credential_id: str, entry: _Entry) -> None:
        sealed = self._box().encrypt(entry.token, _context(credential_id))
        async with self._db.write() as conn:
            await conn.run(
                self._save,
                {
                    "credential_id": credential_id,
                    "version": entry.version,
                    "token": sealed,
                    "renew_at_ms": int(entry.renew_at * 1000),
                },
            )

    async def forget(self, credential_id: str) -> None:
        async with self._db.write() as conn:
            await conn.run(_forget, {"credential_id": credential_id})


class TokenCache:
    """`shared` None keeps tokens in this process only (tests of the cache itself)."""

    def __init__(
        self, shared: SharedTokens | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._shared = shared
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._fetching: dict[tuple[str, str], asyncio.Task[str]] = {}

    def get(self, credential_id: str, version: str) -> str | None:
        """The token this process holds for the credential as it is, if still fresh."""
        entry = self._entries.get(credential_id)
        if entry is None or entry.version != version or self._clock() >= entry.renew_at:
            return None
        return entry.token

    def _keep(self, credential_id: str, entry: _Entry) -> bool:
        current = self._entries.get(credential_id)
        # A slower fetch for an older version must not replace a newer one.
        if current is None or current.version <= entry.version:
            self._entries[credential_id] = entry
            return True
        return False

    async def put(self, credential_id: str, version: str, token: Token) -> None:
        """Keeps a token fetched just now, for this process and the others."""
        margin = min(RENEW_BEFORE_SECONDS, token.expires_in / 10)
        entry = _Entry(version, token.value, self._clock() + token.expires_in - margin)
        if self._keep(credential_id, entry) and self._shared is not None:
            await self._shared.save(credential_id, entry)

    async def forget(self, credential_id: str) -> None:
        """Drops the token, e.g. after the receiver refused it or the credential went away."""
        self._entries.pop(credential_id, None)
        if self._shared is not None:
            await self._shared.forget(credential_id)

    async def get_or_fetch(
        self, credential_id: str, version: str, fetch: Callable[[], Awaitable[Token]]
    ) -> str:
        cached = self.get(credential_id, version)
        if cached is not None:
            return cached
        key = (credential_id, version)
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.ensure_future(self._find_or_fetch(key, fetch))
            self._fetching[key] = task
            # Marks a failure as seen even if every caller has given up waiting.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    async def _find_or_fetch(
        self, key: tuple[str, str], fetch: Callable[[], Awaitable[Token]]
    ) -> str:
        credential_id, version = key
        try:
            if self._shared is not None:
                found = await self._shared.load(credential_id)
                if (
                    found is not None
                    and found.version == version
                    and self._clock() < found.renew_at
                ):
                    self._keep(credential_id, found)
                    return found.token
            token = await fetch()
            await self.put(credential_id, version, token)
            return token.value
        finally:
            self._fetching.pop(key, None)
