"""The one time helper: UTC, one text format, parse and format.

Timestamps are stored as fixed-width ISO 8601 text (`2026-11-30T04:18:22.123456Z`) on both
engines, so that comparing and sorting the text compares and sorts the times. Everything
that writes or compares a timestamp goes through here, so the format cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def format(moment: datetime) -> str:
    """The stored form of an aware datetime (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat, not strftime: this runs several times per message and strftime is slow.
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


class NoTimeZone(ValueError):
    """A time from outside that names no offset, where guessing UTC could mislead."""


def parse(text: str, *, require_zone: bool = False) -> datetime:
    """An aware UTC datetime from ISO 8601 text (any offset; a trailing Z is UTC; no
    offset is UTC unless `require_zone`, then NoTimeZone). Raises ValueError for anything
    else, and OverflowError for a moment whose UTC form leaves the calendar."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        if require_zone:
            raise NoTimeZone(f"{text!r} names no time zone")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def now() -> str:
    return format(datetime.now(UTC))


def after(seconds: float, start: datetime | None = None) -> str:
    """The stored form of a moment `seconds` after `start` (default: now)."""
    return format((start or datetime.now(UTC)) + timedelta(seconds=seconds))
