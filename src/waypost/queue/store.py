"""All of the queue's SQL: the outbox, its lanes and leases.

The one place where the engines differ is here. On PostgreSQL several workers claim at
once, so claims skip rows another worker has locked (`FOR UPDATE SKIP LOCKED`), and the
writers of one lane (ingest appending, a worker moving the head on) take the lane's
advisory lock, so a lane never gets two heads. On SQLite one connection writes at a time,
which gives both for free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from waypost.db import Connection, Prepared, among, as_list
from waypost.queue.tables import outbox

# PostgreSQL: appending a lane head NOTIFYs here; workers in other processes LISTEN.
NOTIFY_CHANNEL = "waypost_outbox"


@dataclass(frozen=True, slots=True)
class Entry:
    """A message for one destination, entering the queue."""

    log_id: str
    destination_id: str
    lane: str
    shared_lane: bool  # False when the lane is the message alone (unordered)
    held: bool
    first_attempt_id: str
    # A batched message (cloud): it may go once its batch is full or at `due_at`, the
    # most its batch may wait.
    batch_max: int | None = None
    due_at: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    seq: int
    log_id: str
    destination_id: str
    lane: str
    attempts: int  # attempts made before this one
    attempt_id: str
    enqueued_at: str
    batch_size: int | None = None  # a batch's head, once its first attempt took its rows


# A lane's head is its oldest row; a new row heads its lane only when the lane is empty.
_insert = outbox.insert().values(
    is_head=~sa.exists().where(outbox.c.lane == sa.bindparam("lane_of"))
)
_append = {
    False: Prepared(_insert.returning(outbox.c.is_head)),
    # A new head NOTIFYs the workers of other processes (at COMMIT) in the same statement,
    # not in a round trip of its own.
    True: Prepared(
        _insert.returning(
            outbox.c.is_head,
            sa.case((outbox.c.is_head, sa.func.pg_notify(NOTIFY_CHANNEL, "")), else_=None).label(
                "notified"
            ),
        )
    ),
}
# A claimed row as `Claimed` has it.
_CLAIMED = (
    outbox.c.seq,
    outbox.c.log_id,
    outbox.c.destination_id,
    outbox.c.lane,
    outbox.c.attempts,
    outbox.c.next_attempt_id.label("attempt_id"),
    outbox.c.enqueued_at,
    outbox.c.batch_size,
)
_READY = sa.text("is_head AND NOT held")  # the claim index's own condition, word for word


def _due_heads(*, postgres: bool) -> sa.Select[tuple[int]]:
    """Lane heads that may go now, oldest due first, none of the destinations given as
    `skip` (one parameter, whatever their number). On PostgreSQL several workers claim at
    once: each skips the rows another has locked."""
    query = (
        sa.select(outbox.c.seq)
        .where(
            _READY,
            outbox.c.due_at <= sa.bindparam("now"),
            sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < sa.bindparam("now")),
            among("outbox.destination_id", "skip", postgres=postgres, negated=True),
        )
        .order_by(outbox.c.due_at, outbox.c.seq)
        .limit(sa.bindparam("limit"))
    )
    return query.with_for_update(skip_locked=True) if postgres else query


# One statement finds and leases them, so that on PostgreSQL a claim is one round trip
# with no transaction around it.
_claim = {
    postgres: Prepared(
        outbox.update()
        .where(outbox.c.seq.in_(_due_heads(postgres=postgres)))
        .values(lease_until=sa.bindparam("until"), lease_owner=sa.bindparam("owner"))
        .returning(*_CLAIMED, outbox.c.due_at)
    )
    for postgres in (False, True)
}
_lease = {
    postgres: Prepared(
        outbox.update()
        .where(among("outbox.log_id", "log_ids", postgres=postgres))
        .values(lease_until=sa.bindparam("until"), lease_owner=sa.bindparam("owner"))
    )
    for postgres in (False, True)
}
_remove = Prepared(
    outbox.delete().where(
        outbox.c.seq == sa.bindparam("row_seq"), outbox.c.lease_owner == sa.bindparam("owner")
    )
)
# The lane's next row becomes its head and, when it may go now, is leased at once to the
# worker that finished the last one: a busy FIFO lane needs no claim round per message.
_handed_off = sa.and_(outbox.c.due_at <= sa.bindparam("now"), sa.not_(outbox.c.held))
_promote = Prepared(
    outbox.update()
    .where(
        outbox.c.seq
        == sa.select(sa.func.min(outbox.c.seq))
        .where(outbox.c.lane == sa.bindparam("lane_of"))
        .scalar_subquery()
    )
    .values(
        is_head=True,
        lease_until=sa.case((_handed_off, sa.bindparam("until")), else_=None),
        lease_owner=sa.case((_handed_off, sa.bindparam("owner")), else_=None),
    )
    .returning(*_CLAIMED, outbox.c.lease_owner)
)
_reschedule = Prepared(
    outbox.update()
    .where(outbox.c.seq == sa.bindparam("row_seq"), outbox.c.lease_owner == sa.bindparam("owner"))
    .values(
        due_at=sa.bindparam("due"),
        lease_until=None,
        lease_owner=None,
        attempts=outbox.c.attempts + 1,
        next_attempt_id=sa.bindparam("attempt_id"),
    )
)
# Batches. A lane's batch is its head and the rows right behind it.
_lane_rows = Prepared(
    sa.select(sa.func.count().label("n")).select_from(
        sa.select(outbox.c.seq)
        .where(outbox.c.lane == sa.bindparam("lane_of"))
        .limit(sa.bindparam("most"))
        .subquery()
    )
)
_due_now = Prepared(
    outbox.update()
    .where(
        outbox.c.lane == sa.bindparam("lane_of"),
        outbox.c.is_head,
        outbox.c.due_at > sa.bindparam("at"),
    )
    .values(due_at=sa.bindparam("at"))
)
_followers = Prepared(
    sa.select(*_CLAIMED)
    .where(outbox.c.lane == sa.bindparam("lane_of"), outbox.c.seq > sa.bindparam("after"))
    .order_by(outbox.c.seq)
    .limit(sa.bindparam("most"))
)
_sized = Prepared(
    outbox.update()
    .where(outbox.c.seq == sa.bindparam("row_seq"), outbox.c.lease_owner == sa.bindparam("owner"))
    .values(batch_size=sa.bindparam("size"))
)
_ours = sa.and_(
    outbox.c.seq == sa.bindparam("row_seq"), outbox.c.lease_owner == sa.bindparam("owner")
)
_remove_follower = Prepared(outbox.delete().where(_ours))
_release = Prepared(outbox.update().where(_ours).values(lease_until=None, lease_owner=None))
_reset_follower = Prepared(
    outbox.update()
    .where(_ours)
    .values(lease_until=None, lease_owner=None, next_attempt_id=sa.bindparam("attempt_id"))
)
_hold = outbox.update().where(outbox.c.destination_id == sa.bindparam("destination"))
_pending = Prepared(
    sa.select(sa.func.count().label("n"))
    .select_from(outbox)
    .where(outbox.c.destination_id == sa.bindparam("destination"))
)
_drop = (
    outbox.delete()
    .where(outbox.c.destination_id == sa.bindparam("destination"))
    .returning(outbox.c.log_id)
)
# Both in one statement: a worker asks before every sleep.
_next_moments = Prepared(
    sa.select(
        sa.select(sa.func.min(outbox.c.due_at))
        .where(_READY, outbox.c.lease_until.is_(None))
        .scalar_subquery()
        .label("due"),
        sa.select(sa.func.min(outbox.c.lease_until))
        .where(outbox.c.lease_until.is_not(None))
        .scalar_subquery()
        .label("until"),
    )
)


_notify = Prepared(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "").label("notified")))
_lock_lane = Prepared(
    sa.select(
        sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(sa.bindparam("lane", type_=sa.Text), 7303715)
        ).label("locked")
    )
)


async def _lock_lanes(conn: Connection, lanes: Sequence[str]) -> None:
    """PostgreSQL: the lanes' advisory locks, in one order so two writers cannot deadlock."""
    for lane in sorted(set(lanes)):
        await conn.first(_lock_lane, {"lane": lane})


async def append(conn: Connection, entries: Sequence[Entry], *, at: str, postgres: bool) -> bool:
    """Adds the entries; True when one of them heads its lane (it can go at once)."""
    if postgres:
        await _lock_lanes(conn, [e.lane for e in entries if e.shared_lane])
    heads = 0
    notify = False  # a batch this append made due, which no INSERT announced
    for entry in entries:
        added = await conn.first(
            _append[postgres],
            {
                "log_id": entry.log_id,
                "destination_id": entry.destination_id,
                "lane": entry.lane,
                "lane_of": entry.lane,
                "held": entry.held,
                "due_at": entry.due_at or at,
                "lease_until": None,
                "lease_owner": None,
                "attempts": 0,
                "next_attempt_id": entry.first_attempt_id,
                "enqueued_at": at,
                "batch_size": None,
            },
        )
        is_head = bool(added and added["is_head"])
        if entry.batch_max is not None:
            # A waiting batch goes as soon as it is full. (A new head that waits is news
            # too: workers learn when to wake for it.)
            flushed = await flush_if_full(conn, entry.lane, entry.batch_max, at)
            notify = notify or (flushed and not is_head)
            is_head = flushed or is_head
        heads += is_head
    if postgres and notify:
        await conn.first(_notify, {})
    return heads > 0


async def flush_if_full(conn: Connection, lane: str, batch_max: int, at: str) -> bool:
    """Makes a batch lane's head due at `at` once the lane holds a whole batch; True if
    it did (a worker has something to do)."""
    found = await conn.first(_lane_rows, {"lane_of": lane, "most": batch_max})
    if found is None or int(found["n"]) < batch_max:
        return False
    return await conn.run(_due_now, {"lane_of": lane, "at": at}) > 0


async def take_batch(
    conn: Connection, head: Claimed, *, owner: str, until: str, most: int
) -> list[Claimed]:
    """Leases the rows that follow a claimed batch head: as many as its first attempt
    took, or up to `most - 1` on its first attempt (then `keep_batch` says how many)."""
    size = head.batch_size or most
    rows = await conn.all(
        _followers, {"lane_of": head.lane, "after": head.seq, "most": max(size - 1, 0)}
    )
    followers = [Claimed(**row) for row in rows]
    await lease(conn, followers, owner=owner, until=until)
    return followers


async def keep_batch(
    conn: Connection, head: Claimed, followers: Sequence[Claimed], keep: int, *, owner: str
) -> None:
    """A first attempt's batch is the head and its first `keep` followers, for every
    attempt to come; the rest go back to waiting."""
    await conn.run(_sized, {"row_seq": head.seq, "owner": owner, "size": 1 + keep})
    await release(conn, followers[keep:], owner=owner)


async def remove_followers(conn: Connection, followers: Sequence[Claimed], *, owner: str) -> None:
    for row in followers:
        await conn.run(_remove_follower, {"row_seq": row.seq, "owner": owner})


async def reset_followers(
    conn: Connection, followers: Sequence[Claimed], attempt_ids: Sequence[str], *, owner: str
) -> None:
    """After a failed batch attempt: the rows wait behind their head again, each with the
    id its next attempt will carry."""
    for row, attempt_id in zip(followers, attempt_ids, strict=True):
        await conn.run(
            _reset_follower, {"row_seq": row.seq, "owner": owner, "attempt_id": attempt_id}
        )


async def claim_due(
    conn: Connection,
    *,
    owner: str,
    now: str,
    lease_until: str,
    limit: int,
    skip: Sequence[str],
    postgres: bool,
) -> list[Claimed]:
    """Leases up to `limit` lane heads that may go now (none of the destinations in
    `skip`), oldest due first."""
    rows = await conn.all(
        _claim[postgres],
        {
            "now": now,
            "limit": limit,
            "skip": as_list(skip, conn),
            "until": lease_until,
            "owner": owner,
        },
    )
    rows.sort(key=lambda row: (row["due_at"], row["seq"]))  # RETURNING keeps no order
    return [Claimed(**{k: v for k, v in row.items() if k != "due_at"}) for row in rows]


async def release(conn: Connection, rows: Sequence[Claimed], *, owner: str) -> None:
    """Gives claims back: the rows may be claimed again at once."""
    for row in rows:
        await conn.run(_release, {"row_seq": row.seq, "owner": owner})


async def lease(conn: Connection, rows: Sequence[Claimed], *, owner: str, until: str) -> None:
    if rows:
        await conn.run(
            _lease[conn.dialect.name == "postgresql"],
            {"log_ids": as_list([r.log_id for r in rows], conn), "until": until, "owner": owner},
        )


@dataclass(frozen=True, slots=True)
class Removed:
    ours: bool  # False: the lease had run out and another worker has the row; no change
    handed_off: Claimed | None  # the lane's next row, leased to this worker


async def remove(
    conn: Connection,
    row: Claimed,
    *,
    owner: str,
    postgres: bool,
    now: str,
    lease_until: str | None,
) -> Removed:
    """Takes a delivered (or given up) row out and makes the next of its lane the head,
    leased to `owner` until `lease_until` when it may go now (None: never)."""
    if postgres and row.lane != row.log_id:
        await _lock_lanes(conn, [row.lane])
    if not await conn.run(_remove, {"row_seq": row.seq, "owner": owner}):
        return Removed(False, None)
    if row.lane == row.log_id:  # an unordered message is a lane of its own
        return Removed(True, None)
    promoted = await conn.first(
        _promote,
        {
            "lane_of": row.lane,
            # No lease to give: a `now` before every due time hands nothing off.
            "now": now if lease_until is not None else "",
            "until": lease_until,
            "owner": owner,
        },
    )
    if promoted is None or promoted["lease_owner"] != owner:
        return Removed(True, None)
    return Removed(True, Claimed(**{k: v for k, v in promoted.items() if k != "lease_owner"}))


async def reschedule(
    conn: Connection, row: Claimed, *, owner: str, due: str, next_attempt_id: str
) -> bool:
    done = await conn.run(
        _reschedule,
        {"row_seq": row.seq, "owner": owner, "due": due, "attempt_id": next_attempt_id},
    )
    return done > 0


async def set_held(conn: Connection, *, destination_id: str, held: bool) -> None:
    await conn.execute(_hold.values(held=held), {"destination": destination_id})


async def pending(conn: Connection, *, destination_id: str) -> int:
    row = await conn.first(_pending, {"destination": destination_id})
    return int(row["n"]) if row else 0


async def drop(conn: Connection, *, destination_id: str) -> list[str]:
    rows = (await conn.execute(_drop, {"destination": destination_id})).all()
    return [row.log_id for row in rows]


async def next_moment(conn: Connection) -> str | None:
    """The earliest time something may become claimable: a head coming due or a claim
    running out."""
    found = await conn.first(_next_moments, {})
    moments = [m for m in (found["due"], found["until"]) if m] if found else []
    return min(moments) if moments else None
