"""The queue: what is still to send, in lanes.

A narrow interface (enqueue inside the ingest transaction, claim, finish, retry, hold,
drop), so that the engine underneath can change without touching ingest or delivery.
A lane is the unit of order:

- `fifo`: the destination is one lane; one message in flight, and a failing head holds
  everything behind it (Redox's FIFO).
- `fifo` with `orderingKey`: one lane per value at that JSON pointer in the message
  (Redox's child queues); lanes deliver in parallel, and a failing lane holds only itself.
  A message without the value goes to the destination's default lane.
- `unordered`: every message is a lane of its own.
- `unordered` with `batch` (cloud destinations): one lane per data model, delivered a
  batch at a time: the head and up to `maxMessages - 1` rows behind it, written as one
  file. A head is due `maxSeconds` after it was accepted, or as soon as its lane holds a
  whole batch; a failed batch is retried whole (its size is kept on the head).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from waypost.db import Connection
from waypost.queue import store
from waypost.queue.store import NOTIFY_CHANNEL, Claimed, Entry, Removed

__all__ = [
    "NOTIFY_CHANNEL",
    "Claimed",
    "Entry",
    "Removed",
    "claim",
    "drop",
    "enqueue",
    "finish",
    "keep_batch",
    "lane_for",
    "next_moment",
    "pending",
    "retry",
    "set_held",
    "take_batch",
]

_MISSING = object()


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer, or _MISSING."""
    value = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict):
            if token not in value:
                return _MISSING
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return _MISSING
    return value


def lane_for(
    *,
    destination_id: str,
    log_id: str,
    mode: str,
    ordering_key: str | None,
    message: Any,
    batch_of: str | None = None,
) -> tuple[str, bool]:
    """(lane, whether other messages share it) for a message to this destination;
    `batch_of`: the data model, when the destination writes batches."""
    if batch_of is not None:
        return f"{destination_id}/batch/{batch_of}", True
    if mode == "unordered":
        return log_id, False
    if ordering_key is None:
        return destination_id, True
    value = resolve_pointer(message, ordering_key)
    if value is _MISSING or value is None or isinstance(value, dict | list):
        return destination_id, True  # the default lane
    return f"{destination_id}/{value}", True


async def enqueue(conn: Connection, entries: Sequence[Entry], *, at: str, postgres: bool) -> bool:
    """Adds messages, in the caller's transaction (they exist once it commits). True when
    one of them can go at once (it heads its lane): only then need a worker wake up, and
    on PostgreSQL the workers of other processes are told at COMMIT."""
    return await store.append(conn, entries, at=at, postgres=postgres)


async def claim(
    conn: Connection,
    *,
    owner: str,
    now: str,
    lease_until: str,
    limit: int,
    skip: Sequence[str],
    choose: Callable[[list[Claimed]], list[Claimed]],
    postgres: bool,
) -> list[Claimed]:
    """Leases lane heads that are due: of up to `limit` of them (none of the
    destinations in `skip`), the ones `choose` keeps (the caller's per-destination
    concurrency); the others are given back at once. Each statement is atomic on its
    own: run it in `Database.write(transaction=False)`."""
    found = await store.claim_due(
        conn,
        owner=owner,
        now=now,
        lease_until=lease_until,
        limit=limit,
        skip=skip,
        postgres=postgres,
    )
    chosen = choose(found)
    if len(chosen) < len(found):
        kept = {row.seq for row in chosen}
        await store.release(conn, [row for row in found if row.seq not in kept], owner=owner)
    return chosen


async def take_batch(
    conn: Connection, head: Claimed, *, owner: str, until: str, most: int
) -> list[Claimed]:
    """The rows that go with a claimed batch head (leased to `owner` until `until`): the
    same ones as its earlier attempt, or up to `most - 1` on its first, when `keep_batch`
    then fixes how many of them it takes."""
    return await store.take_batch(conn, head, owner=owner, until=until, most=most)


async def keep_batch(
    conn: Connection, head: Claimed, followers: Sequence[Claimed], keep: int, *, owner: str
) -> None:
    await store.keep_batch(conn, head, followers, keep, owner=owner)


async def finish(
    conn: Connection,
    row: Claimed,
    *,
    owner: str,
    postgres: bool,
    now: str = "",
    lease_until: str | None = None,
    followers: Sequence[Claimed] = (),
    batch_max: int | None = None,
) -> Removed:
    """The row (and a batch's followers) is done (delivered, or given up): out of the
    queue, its lane moves on. With `lease_until`, the lane's next row, if it may go at
    `now`, comes back leased to this worker (`handed_off`). `ours` is False when this
    worker's lease had run out and another worker took the row: then nothing changes.
    `batch_max`: the next batch goes at once if the lane already holds a whole one."""
    # Followers first, so that the head's removal promotes the row after the batch.
    await store.remove_followers(conn, followers, owner=owner)
    removed = await store.remove(
        conn, row, owner=owner, postgres=postgres, now=now, lease_until=lease_until
    )
    if removed.ours and batch_max is not None and now and removed.handed_off is None:
        await store.flush_if_full(conn, row.lane, batch_max, now)
    return removed


async def retry(
    conn: Connection,
    row: Claimed,
    *,
    owner: str,
    due: str,
    next_attempt_id: str,
    followers: Sequence[Claimed] = (),
    follower_attempt_ids: Sequence[str] = (),
) -> bool:
    """The row goes back to wait until `due`, still heading its lane (a batch's
    followers behind it, each with the id of its next attempt)."""
    ours = await store.reschedule(conn, row, owner=owner, due=due, next_attempt_id=next_attempt_id)
    if ours:
        await store.reset_followers(conn, followers, follower_attempt_ids, owner=owner)
    return ours


async def set_held(conn: Connection, *, destination_id: str, held: bool) -> None:
    """Holds (or lets go) a destination's queue: nothing is claimed while held."""
    await store.set_held(conn, destination_id=destination_id, held=held)


async def pending(conn: Connection, *, destination_id: str) -> int:
    return await store.pending(conn, destination_id=destination_id)


async def drop(conn: Connection, *, destination_id: str) -> list[str]:
    """Empties a destination's queue; returns the log ids that were waiting."""
    return await store.drop(conn, destination_id=destination_id)


async def next_moment(conn: Connection) -> str | None:
    return await store.next_moment(conn)
