"""Redox's documented limit: 10,000 requests per five minutes per client address.

A sliding window, estimated from two fixed windows (the previous one weighted by how much
of it still overlaps the sliding window): O(1) per client, no timestamp lists.

The counts live in the database (`rate_limit_windows`), so every API process of an
installation, on one machine or several, spends one budget per client address. A
process does not write per request: it takes a **lease** on what is left (a sixteenth of
it, at least one request) in one atomic statement and spends it in memory. Near the
limit leases shrink to one request each, so across any number of processes no more than
the limit pass; far from it a busy client costs a database write every few hundred
requests. A lease a process does not spend before its window ends stays counted (the
client loses it, never gains), and a refusal is remembered locally until its
Retry-After, so a client hammering while refused costs no writes at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waypost.db import Database, Prepared
from waypost.http import problem_response
from waypost.runtime.tables import rate_limit_windows as windows

LIMITED_PREFIXES = ("/platform/", "/v2/")
LEASE_SHARE = 16  # a lease takes this fraction of what is left (at least one request)
_PRUNE_EVERY = 10_000
_MAX_COUNT = 2**31 - 1  # the count column is a 32-bit integer on PostgreSQL


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    # Allowed: seconds until the current fixed window ends. Refused: the same as
    # retry_after, so that the two headers of a 429 agree.
    reset_seconds: int
    retry_after: int  # when refused: until a request would be allowed


class Counts(Protocol):
    """Where the windows' counts live: the database, or (for tests of the arithmetic) a
    dict. Both must make `claim` atomic."""

    async def count(self, client: str, period: int) -> int:
        """What was handed out in a window (0 when nothing)."""
        ...

    async def claim(self, client: str, period: int, want: int, cap: int) -> tuple[int, int]:
        """Hands out up to `want` more, keeping the window's count at or under `cap`;
        answers (the count after, how many were handed out)."""
        ...


class MemoryCounts:
    """Counts in this process only: for tests of the window's arithmetic."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    async def count(self, client: str, period: int) -> int:
        return self._counts.get((client, period), 0)

    async def claim(self, client: str, period: int, want: int, cap: int) -> tuple[int, int]:
        current = self._counts.get((client, period), 0)
        granted = max(0, min(want, cap - current))
        self._counts[(client, period)] = current + granted
        return current + granted, granted


def _claim_statement(insert: postgresql.Insert | sqlite.Insert) -> Prepared:
    want = sa.bindparam("want", type_=sa.Integer)
    cap = sa.bindparam("cap", type_=sa.Integer)
    # Every SET expression reads the row as it was (both engines), so `granted` and the
    # new count agree.
    grant = sa.case(
        (windows.c.count + want <= cap, want),
        (windows.c.count < cap, cap - windows.c.count),
        else_=sa.literal_column("0"),
    )
    statement = (
        insert.values(
            period=sa.bindparam("period"),
            client=sa.bindparam("client"),
            count=sa.bindparam("first"),
            granted=sa.bindparam("first"),
        )
        .on_conflict_do_update(
            index_elements=[windows.c.period, windows.c.client],
            set_={"count": windows.c.count + grant, "granted": grant},
        )
        .returning(windows.c.count, windows.c.granted)
    )
    return Prepared(statement)


# The same upsert, in each engine's words.
_CLAIM = {
    "postgresql": _claim_statement(postgresql.insert(windows)),
    "sqlite": _claim_statement(sqlite.insert(windows)),
}
_count = Prepared(
    sa.select(windows.c.count).where(
        windows.c.period == sa.bindparam("period"), windows.c.client == sa.bindparam("client")
    )
)
_prune = Prepared(windows.delete().where(windows.c.period < sa.bindparam("before")))


class DatabaseCounts:
    """The counts every process of an installation shares."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._claim = _CLAIM[db.dialect]
        self._pruned_below = 0

    async def count(self, client: str, period: int) -> int:
        async with self._db.read() as conn:
            row = await conn.first(_count, {"period": period, "client": client})
        return int(row["count"]) if row else 0

    async def claim(self, client: str, period: int, want: int, cap: int) -> tuple[int, int]:
        first = max(0, min(want, cap))
        async with self._db.write() as conn:
            if period - 1 > self._pruned_below:
                # Once per window per process: windows before the previous one are over.
                self._pruned_below = period - 1
                await conn.run(_prune, {"before": period - 1})
            row = await conn.first(
                self._claim,
                {"period": period, "client": client, "first": first, "want": want, "cap": cap},
            )
        assert row is not None  # an upsert with RETURNING always answers its row
        return int(row["count"]), int(row["granted"])


@dataclass
class _Lease:
    """What this process knows of one client's current window."""

    period: int
    previous: int | None = None  # the previous window's count, read once
    count: int = 0  # the window's count in the database after this process's last claim
    left: int = 0  # of this process's leases, not spent yet
    refused_until: float = 0.0  # a refusal stands until then (its Retry-After)


class SlidingWindow:
    def __init__(self, limit: int, window_seconds: float, counts: Counts) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.counts = counts
        self._leases: dict[str, _Lease] = {}
        self._seen = 0

    async def take(self, key: str, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        index, offset = divmod(now, self.window_seconds)
        period = int(index)
        reset = math.ceil(self.window_seconds - offset)
        lease = self._lease(key, period)
        if now < lease.refused_until:
            wait = max(1, math.ceil(lease.refused_until - now))
            return Decision(False, 0, wait, wait)
        overlap = 1 - offset / self.window_seconds
        if lease.previous is None:
            lease.previous = await self.counts.count(key, period - 1)
        # A request may pass while previous * overlap + count + 1 <= limit: the window's
        # count may reach `room`.
        room = self.limit - lease.previous * overlap
        if lease.left == 0:
            cap = min(math.floor(room), _MAX_COUNT)
            want = max(1, (cap - lease.count) // LEASE_SHARE)
            count, granted = await self.counts.claim(key, period, want, cap)
            # Another request of this client may have claimed meanwhile: both leases stand.
            lease = self._lease(key, period)
            lease.count = max(lease.count, count)
            lease.left += granted
            if lease.left == 0:
                wait = self._retry_after(lease.previous or 0, lease.count, offset)
                lease.refused_until = now + wait
                return Decision(False, 0, wait, wait)
        lease.left -= 1
        spent = lease.count - lease.left  # this request included
        return Decision(True, max(0, math.floor(room - spent)), reset, 0)

    def _lease(self, key: str, period: int) -> _Lease:
        lease = self._leases.get(key)
        if lease is None or lease.period != period:
            self._prune(period)
            # The previous window's count is read from the counts, not taken from this
            # process's lease: other processes spent in it too.
            lease = self._leases[key] = _Lease(period)
        return lease

    def _retry_after(self, previous: int, current: int, offset: float) -> int:
        """Seconds until previous * overlap + current + 1 <= limit, refused requests not
        counting."""
        w = self.window_seconds
        room = self.limit - 1 - current
        if room >= 0 and previous > 0:
            # Within this window: the previous window's weight must fall far enough.
            needed = w * (1 - room / previous)
            if needed < w:
                return max(1, math.ceil(needed - offset))
        # Next window: the current count becomes the weighted one.
        needed_next = w * (1 - (self.limit - 1) / current) if current else 0
        return max(1, math.ceil(w - offset + max(0.0, needed_next)))

    def _prune(self, period: int) -> None:
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            stale = [k for k, lease in self._leases.items() if lease.period < period]
            for key in stale:
                del self._leases[key]


class RateLimit:
    """ASGI middleware: counts API requests per client address; answers 429 over the
    limit, and tells every caller where they stand in X-RateLimit-* headers. The counts
    are the database's (`counts`, or the running app's database when not given)."""

    def __init__(
        self, app: ASGIApp, limit: int, window_seconds: float, counts: Counts | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.window_seconds = window_seconds
        self._window = None if counts is None else SlidingWindow(limit, window_seconds, counts)

    async def _sliding_window(self, scope: Scope) -> SlidingWindow:
        if self._window is None:
            # The runtime exists once the app's lifespan has started it.
            db: Database = scope["app"].state.runtime.db
            self._window = SlidingWindow(self.limit, self.window_seconds, DatabaseCounts(db))
        return self._window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        window = await self._sliding_window(scope)
        decision = await window.take(client[0] if client else "unknown")
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
            "X-RateLimit-Reset": str(decision.reset_seconds),
        }
        if not decision.allowed:
            response = problem_response(
                429,
                "Too Many Requests",
                "rate-limited",
                f"More than {self.limit} requests in {self.window_seconds:g} s "
                f"from this address; retry in {decision.retry_after} s.",
                headers={**headers, "Retry-After": str(decision.retry_after)},
            )
            await response(scope, receive, send)
            return
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)
