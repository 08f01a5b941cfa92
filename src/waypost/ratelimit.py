"""Redox's documented limit: 10,000 requests per five minutes per client address.

A sliding window, estimated from two fixed windows (the previous one weighted by how much
of it still overlaps the sliding window): O(1) per request, no timestamp lists. The count
lives in this process; with several processes each keeps its own (see the README).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waypost.http import problem_response

LIMITED_PREFIXES = ("/platform/", "/v2/")
_PRUNE_EVERY = 10_000


@dataclass
class _Counter:
    window: int
    previous: int
    current: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    reset_seconds: int  # until the current fixed window ends
    retry_after: int  # when refused: until a request would be allowed


class SlidingWindow:
    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._counters: dict[str, _Counter] = {}
        self._seen = 0

    def take(self, key: str, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        index, offset = divmod(now, self.window_seconds)
        window = int(index)
        counter = self._counters.get(key)
        if counter is None or counter.window < window - 1:
            counter = self._counters[key] = _Counter(window, 0, 0)
        elif counter.window == window - 1:
            counter.window, counter.previous, counter.current = window, counter.current, 0
        overlap = 1 - offset / self.window_seconds
        estimate = counter.previous * overlap + counter.current
        reset = math.ceil(self.window_seconds - offset)
        self._prune(window)
        if estimate + 1 > self.limit:
            return Decision(False, 0, reset, self._retry_after(counter, offset))
        counter.current += 1
        remaining = max(0, math.floor(self.limit - estimate - 1))
        return Decision(True, remaining, reset, 0)

    def _retry_after(self, counter: _Counter, offset: float) -> int:
        """Seconds until previous * overlap + current + 1 <= limit, refused requests not
        counting."""
        w = self.window_seconds
        room = self.limit - 1 - counter.current
        if room >= 0 and counter.previous > 0:
            # Within this window: the previous window's weight must fall far enough.
            needed = w * (1 - room / counter.previous)
            if needed < w:
                return max(1, math.ceil(needed - offset))
        # Next window: the current count becomes the weighted one.
        needed_next = w * (1 - (self.limit - 1) / counter.current) if counter.current else 0
        return max(1, math.ceil(w - offset + max(0.0, needed_next)))

    def _prune(self, window: int) -> None:
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            stale = [k for k, c in self._counters.items() if c.window < window - 1]
            for key in stale:
                del self._counters[key]


class RateLimit:
    """ASGI middleware: counts API requests per client address; answers 429 over the
    limit, and tells every caller where they stand in X-RateLimit-* headers."""

    def __init__(self, app: ASGIApp, limit: int, window_seconds: float) -> None:
        self.app = app
        self.window = SlidingWindow(limit, window_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        decision = self.window.take(client[0] if client else "unknown")
        headers = {
            "X-RateLimit-Limit": str(self.window.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
            "X-RateLimit-Reset": str(decision.reset_seconds),
        }
        if not decision.allowed:
            response = problem_response(
                429,
                "Too Many Requests",
                "rate-limited",
                f"More than {self.window.limit} requests in {self.window.window_seconds:g} s "
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
