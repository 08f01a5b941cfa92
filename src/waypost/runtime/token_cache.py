"""Access tokens kept in process until shortly before they expire.

One entry per credential, shared by every destination that uses it. An entry is valid
only for the credential as it was when the token was fetched (its `updatedAt`), so any
edit makes the next caller fetch again. Concurrent callers for the same credential share
one fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
    renew_at: float  # on the monotonic clock


class TokenCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._fetching: dict[tuple[str, str], asyncio.Task[Token]] = {}

    def get(self, credential_id: str, version: str) -> str | None:
        entry = self._entries.get(credential_id)
        if entry is None or entry.version != version or self._clock() >= entry.renew_at:
            return None
        return entry.token

    def put(self, credential_id: str, version: str, token: Token) -> None:
        margin = min(RENEW_BEFORE_SECONDS, token.expires_in / 10)
        renew_at = self._clock() + token.expires_in - margin
        current = self._entries.get(credential_id)
        # A slower fetch for an older version must not replace a newer one.
        if current is None or current.version <= version:
            self._entries[credential_id] = _Entry(version, token.value, renew_at)

    def forget(self, credential_id: str) -> None:
        """Drops the token, e.g. after the receiver refused it or the credential went away."""
        self._entries.pop(credential_id, None)

    async def get_or_fetch(
        self, credential_id: str, version: str, fetch: Callable[[], Awaitable[Token]]
    ) -> str:
        cached = self.get(credential_id, version)
        if cached is not None:
            return cached
        key = (credential_id, version)
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch_and_keep(key, fetch))
            self._fetching[key] = task
            # Marks a failure as seen even if every caller has given up waiting.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        token = await asyncio.shield(task)
        return token.value

    async def _fetch_and_keep(
        self, key: tuple[str, str], fetch: Callable[[], Awaitable[Token]]
    ) -> Token:
        try:
            token = await fetch()
            self.put(*key, token)
            return token
        finally:
            self._fetching.pop(key, None)
