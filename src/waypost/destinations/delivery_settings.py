"""A destination's delivery settings: how many messages may be in flight, and in what order.

A destination stores only the keys its client gave (null: none); the effective settings
fill in the defaults, which depend on each other (an `orderingKey` makes room for lanes
in parallel) and on the kind of destination (cloud storage has no order to keep).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import JsonValue

from waypost.http import Invalid

MAX_CONCURRENCY = 100
MAX_RETRY_SECONDS = 30 * 24 * 3600
MAX_ORDERING_KEY_LENGTH = 512
# Lanes in parallel when an orderingKey splits a FIFO queue, and messages in flight when
# nothing is ordered, unless the client says otherwise.
DEFAULT_LANES = 10
DEFAULT_UNORDERED = 10
DEFAULT_CLOUD_UNORDERED = 16
# A batch file: at most this many messages, and a message waits at most this long for its
# batch to fill (cloud destinations only).
MAX_BATCH_MESSAGES = 10_000
MAX_BATCH_SECONDS = 3600


class DeliveryMode(StrEnum):
    FIFO = "fifo"  # Redox's: one message in flight per lane; a failure holds the lane
    UNORDERED = "unordered"  # up to `concurrency` in flight; a failure holds nothing


@dataclass(frozen=True, slots=True)
class Batch:
    max_messages: int
    max_seconds: int


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    mode: DeliveryMode
    concurrency: int  # messages in flight: lanes in fifo mode, messages in unordered mode
    ordering_key: str | None  # an RFC 6901 JSON pointer into the message; fifo only
    max_retry_seconds: int | None  # after that long a message fails; None: no limit
    batch: Batch | None = None  # cloud, unordered: several messages per file


def effective(stored: Mapping[str, JsonValue] | None, *, cloud: bool) -> DeliverySettings:
    """The settings with defaults filled in; `stored` holds the keys the client gave,
    under their wire names. Raises Invalid, naming the field, for a combination that
    breaks a rule."""
    given = stored or {}
    mode_given = given.get("mode")
    if mode_given is not None:
        mode = DeliveryMode(str(mode_given))
    else:
        mode = DeliveryMode.UNORDERED if cloud else DeliveryMode.FIFO
    ordering_key = given.get("orderingKey")
    if ordering_key is not None and mode is not DeliveryMode.FIFO:
        raise Invalid("delivery.orderingKey", "applies only with mode fifo")
    concurrency_given = given.get("concurrency")
    if mode is DeliveryMode.UNORDERED:
        default = DEFAULT_CLOUD_UNORDERED if cloud else DEFAULT_UNORDERED
    else:
        default = DEFAULT_LANES if ordering_key is not None else 1
    concurrency = default if concurrency_given is None else _int(concurrency_given)
    if mode is DeliveryMode.FIFO and ordering_key is None and concurrency != 1:
        raise Invalid(
            "delivery.concurrency",
            "must be 1 in fifo mode without an orderingKey (one message in flight); "
            "set an orderingKey for lanes in parallel, or mode unordered",
        )
    max_retry = given.get("maxRetrySeconds")
    return DeliverySettings(
        mode=mode,
        concurrency=concurrency,
        ordering_key=None if ordering_key is None else str(ordering_key),
        max_retry_seconds=None if max_retry is None else _int(max_retry),
        batch=_batch(given.get("batch"), mode=mode, cloud=cloud),
    )


def _batch(given: JsonValue, *, mode: DeliveryMode, cloud: bool) -> Batch | None:
    if given is None:
        return None
    if not cloud:
        raise Invalid("delivery.batch", "applies only to cloud destinations (files)")
    if mode is not DeliveryMode.UNORDERED:
        raise Invalid(
            "delivery.batch",
            "applies only with mode unordered; a batch file holds one data model's messages "
            "in the order they were accepted",
        )
    # The wire schema checked both keys' presence and ranges.
    assert isinstance(given, dict)
    return Batch(_int(given["maxMessages"]), _int(given["maxSeconds"]))


def _int(value: JsonValue) -> int:
    # Stored values passed the wire schema's strict integer check.
    assert isinstance(value, int)
    return value


def merged(
    stored: Mapping[str, JsonValue] | None, given: Mapping[str, JsonValue] | None
) -> dict[str, JsonValue] | None:
    """What a PATCH stores: the given keys replace the stored ones, a null key goes back to
    its default, and a null object (`given` None) resets every key."""
    if given is None:
        return None
    kept = {**(stored or {}), **given}
    return {k: v for k, v in kept.items() if v is not None} or None
