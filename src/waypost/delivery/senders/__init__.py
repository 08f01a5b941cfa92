"""The senders: how one attempt reaches a destination (a URL, or a cloud container)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    http_status: int | None
    error: str | None  # why it failed, in words a person can act on
    retry_after: str | None  # the receiver's Retry-After on a 429 or 503
    duration_ms: int
    answer: bytes = b""  # the receiver's body (a synchronous query's result)
    file_name: str | None = None  # the blob written, for a cloud destination
