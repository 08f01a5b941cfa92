"""When a failed message is tried again.

- `fifo` follows Redox: immediately, then after 10, 10, 20, 30, 50, 80 and 120 s, then
  every 120 s until it succeeds (the head holds its lane meanwhile).
- `unordered` follows Svix: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then failed.
- `maxRetrySeconds` (from acceptance) ends either sooner: one last attempt at the limit,
  then failed.
- `Retry-After` on a 429 or 503 replaces the scheduled wait, clamped to 1 s .. 1 h.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIFO = (0, 10, 10, 20, 30, 50, 80, 120)
FIFO_THEN_EVERY = 120
UNORDERED = (5, 300, 1800, 7200, 18000, 36000, 36000)
RETRY_AFTER_MIN, RETRY_AFTER_MAX = 1.0, 3600.0


@dataclass(frozen=True, slots=True)
class Next:
    retry_at: datetime | None  # None: give up


def wait_after(failures: int, mode: str) -> float | None:
    """Seconds to wait after the `failures`-th failed attempt; None when no retry is left."""
    if mode == "unordered":
        return UNORDERED[failures - 1] if failures <= len(UNORDERED) else None
    return FIFO[failures - 1] if failures <= len(FIFO) else FIFO_THEN_EVERY


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is rare from receivers and
    ignored), clamped to 1 s .. 1 h."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, RETRY_AFTER_MIN), RETRY_AFTER_MAX)


def next_attempt(
    *,
    failures: int,
    mode: str,
    now: datetime,
    accepted_at: datetime,
    max_retry_seconds: int | None,
    retry_after: float | None,
    scale: float,
) -> Next:
    wait = retry_after if retry_after is not None else wait_after(failures, mode)
    if wait is None:
        return Next(None)
    retry_at = now + timedelta(seconds=wait * scale)
    if max_retry_seconds is not None:
        deadline = accepted_at + timedelta(seconds=max_retry_seconds * scale)
        if now >= deadline:
            return Next(None)
        retry_at = min(retry_at, deadline)
    return Next(retry_at)
