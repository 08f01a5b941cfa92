"""The delivery worker: claims due lane heads, sends them, records each attempt.

One loop per process claims as many rows as it has room for (`concurrency` in flight in
all, and each destination's own `delivery.concurrency`), hands each to a task, and sleeps
until something can happen: new work (in-process wake-up on SQLite, LISTEN/NOTIFY on
PostgreSQL), a finished task (room, and maybe a lane's next head), the next retry coming
due, or a claim running out. Nothing waits on a polling tick, though a slow poll remains
as a backstop.

At least once: a row leaves the outbox only in the transaction that records its final
attempt; a worker killed mid-send leaves a lease that runs out, and the row is claimed
again. Sends never happen inside a database transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg

from waypost import clock
from waypost.crypto import SecretKeyError
from waypost.db import new_id
from waypost.delivery import schedule
from waypost.delivery.senders import Outcome, blob
from waypost.delivery.senders import http as http_sender
from waypost.destinations import service as destinations
from waypost.destinations.delivery_settings import Batch
from waypost.destinations.schemas import StorageSettings
from waypost.destinations.target import DeliveryTarget
from waypost.logs import service as logs
from waypost.queue import service as queue
from waypost.runtime import Runtime

log = logging.getLogger("waypost.delivery")

BACKSTOP_POLL_SECONDS = 5.0
SETTINGS_TTL_SECONDS = 1.0  # how long a destination's settings are trusted between reads
TROUBLE_PAUSE_SECONDS = 1.0  # after the database failed the loop (a restart, say)
STOP_GRACE_SECONDS = 10.0  # how long sends in flight may take to finish on a stop


@dataclass(frozen=True, slots=True)
class _Cached:
    target: DeliveryTarget | None  # None: the destination is gone
    read_at: float
    unreadable: str | None = None  # why its secrets cannot be opened (a wrong key)


class Worker:
    def __init__(self, rt: Runtime, *, concurrency: int = 100) -> None:
        self.rt = rt
        self.owner = new_id()
        self.concurrency = concurrency
        self._postgres = rt.db.dialect == "postgresql"
        self._wake = rt.delivery_wake  # ingest rings it after each commit
        self._stopping = False
        self._grace_seconds = STOP_GRACE_SECONDS
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: Counter[str] = Counter()
        self._targets: dict[str, _Cached] = {}
        self._containers = blob.Containers(ttl_seconds=SETTINGS_TTL_SECONDS)
        settings = rt.settings
        self._timeout = settings.delivery_timeout_seconds
        # Longer than anything an attempt may take (a credential's token, then the send),
        # so a live worker never loses its claim; a dead worker's claim comes back.
        self._lease_seconds = (
            settings.delivery_timeout_seconds + settings.verify_timeout_seconds + 5
        )

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen()) if self._postgres else None
        try:
            while not self._stopping:
                try:
                    await self._turn()
                except Exception:
                    # The database went away (a PostgreSQL restart, a full disk): claims
                    # are safe to retry, and sends in flight record their outcome later.
                    log.exception("delivery: a claim round failed; trying again shortly")
                    await asyncio.sleep(TROUBLE_PAUSE_SECONDS)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            # Here, not in stop(): a claim under way when stop() was called may still
            # start sends, and they must finish before the runtime they use is closed.
            if self._tasks:
                _, pending = await asyncio.wait(set(self._tasks), timeout=self._grace_seconds)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _turn(self) -> None:
        self._wake.clear()  # before claiming, so a wake-up meanwhile is not lost
        room = self.concurrency - len(self._tasks)
        claimed = await self._claim(room) if room > 0 else 0
        if room > 0 and claimed == room:
            await asyncio.sleep(0)
            return  # there may be more: claim again at once
        if self._wake.is_set():
            return  # rung while claiming: no need to ask when to wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), await self._sleep_seconds())

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stops claiming; `run` then lets the sends in flight finish for up to
        `grace_seconds` before it returns (await it). What is cut short is claimed again
        once its lease runs out."""
        self._grace_seconds = grace_seconds
        self._stopping = True
        self._wake.set()

    async def _sleep_seconds(self) -> float:
        async with self.rt.db.read() as conn:
            moment = await queue.next_moment(conn)
        if moment is None:
            return BACKSTOP_POLL_SECONDS
        wait = (clock.parse(moment) - clock.utcnow()).total_seconds()
        return min(max(wait, 0.0), BACKSTOP_POLL_SECONDS)

    def _capacity(self, destination_id: str) -> int:
        cached = self._targets.get(destination_id)
        limit = cached.target.delivery.concurrency if cached and cached.target else 1
        return limit - self._in_flight[destination_id]

    def _choose(self, found: list[queue.Claimed]) -> list[queue.Claimed]:
        chosen: list[queue.Claimed] = []
        taken: Counter[str] = Counter()
        for row in found:
            if taken[row.destination_id] < self._capacity(row.destination_id):
                taken[row.destination_id] += 1
                chosen.append(row)
        return chosen

    async def _claim(self, room: int) -> int:
        saturated = [d for d in self._in_flight if self._capacity(d) <= 0]
        now = clock.utcnow()
        async with self.rt.db.write(transaction=False) as conn:
            rows = await queue.claim(
                conn,
                owner=self.owner,
                now=clock.format(now),
                lease_until=clock.after(self._lease_seconds, now),
                limit=room,
                skip=saturated,
                choose=self._choose,
                postgres=self._postgres,
            )
        if not rows:
            return 0
        async with self.rt.db.read() as conn:
            found = await logs.deliveries(conn, [r.log_id for r in rows])
        unknown = await self._refresh_targets(r.destination_id for r in rows)
        for row in rows:
            self._in_flight[row.destination_id] += 1
            task = asyncio.create_task(self._deliver(row, found.get(row.log_id)))
            self._tasks.add(task)
            task.add_done_callback(self._done(row))
        if unknown:
            self._wake.set()  # their real concurrency may allow more
        return len(rows)

    def _done(self, row: queue.Claimed) -> Callable[[asyncio.Task[None]], None]:
        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._in_flight[row.destination_id] -= 1
            if self._in_flight[row.destination_id] <= 0:
                del self._in_flight[row.destination_id]
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "delivery of log %s failed unexpectedly", row.log_id, exc_info=task.exception()
                )
            self._wake.set()  # room again, and maybe the lane's next head

        return finished

    async def _refresh_targets(self, destination_ids: Iterable[str]) -> bool:
        """Reads the settings of destinations not read lately; True if any were unknown."""
        now = time.monotonic()
        stale = {
            d
            for d in destination_ids
            if d not in self._targets or now - self._targets[d].read_at > SETTINGS_TTL_SECONDS
        }
        unknown = any(d not in self._targets for d in stale)
        for destination_id in stale:
            try:
                target = await destinations.delivery_target(self.rt, destination_id=destination_id)
            except SecretKeyError as exc:
                self._targets[destination_id] = _Cached(None, now, unreadable=str(exc))
            else:
                self._targets[destination_id] = _Cached(target, now)
        return unknown

    async def _deliver(self, row: queue.Claimed, delivery: logs.Delivery | None) -> None:
        """Sends the row, then whatever its lane hands on to this task (a busy FIFO lane
        goes from one message to the next without a claim round)."""
        next_row: queue.Claimed | None = row
        while next_row is not None:
            next_row = await self._deliver_one(next_row, delivery)
            if next_row is not None:
                async with self.rt.db.read() as conn:
                    delivery = (await logs.deliveries(conn, [next_row.log_id])).get(next_row.log_id)
                await self._refresh_targets([next_row.destination_id])

    async def _deliver_one(
        self, row: queue.Claimed, delivery: logs.Delivery | None
    ) -> queue.Claimed | None:
        cached = self._targets.get(row.destination_id)
        if cached is not None and cached.unreadable is not None:
            # Nothing can be sent until its secrets are set again; its queue waits (and a
            # new token holds it until the receiver is verified again).
            await self._postpone(row, cached.unreadable)
            return None
        target = cached.target if cached else None
        if delivery is None or target is None:
            await self._give_up(row, "destination deleted")
            return None
        attempt_at = clock.now()
        storage = target.cloud_provider_settings
        batch = target.delivery.batch
        followers: list[queue.Claimed] = []
        if storage is not None:
            if batch is not None:
                followers, file = await self._batch(row, delivery, storage.settings, batch)
            else:
                file = blob.single_file(storage.settings, delivery, row.attempt_id)
            outcome = await blob.write(
                self.rt, target, file, timeout_seconds=self._timeout, containers=self._containers
            )
        else:
            outcome = await http_sender.send(
                self.rt, target, delivery, row.attempt_id, timeout_seconds=self._timeout
            )
        return await self._record(row, target, attempt_at, outcome, followers)

    async def _batch(
        self,
        head: queue.Claimed,
        delivery: logs.Delivery,
        storage: StorageSettings,
        batch: Batch,
    ) -> tuple[list[queue.Claimed], blob.BlobFile]:
        """Leases the rows that go with a batch head, and makes their file. A first
        attempt takes what fits in `max_batch_bytes` (at least the head), and the batch
        keeps that size for its retries."""
        async with self.rt.db.write() as conn:
            followers = await queue.take_batch(
                conn,
                head,
                owner=self.owner,
                until=clock.after(self._lease_seconds),
                most=batch.max_messages,
            )
            found = await logs.deliveries(conn, [r.log_id for r in followers])
            if head.batch_size is None:
                size = len(delivery.body)
                keep = 0
                for row in followers:
                    size += len(found[row.log_id].body) if row.log_id in found else 0
                    if size > self.rt.settings.max_batch_bytes:
                        break
                    keep += 1
                await queue.keep_batch(conn, head, followers, keep, owner=self.owner)
                followers = followers[:keep]
        lines = [(delivery, head.attempt_id)]
        lines += [(found[r.log_id], r.attempt_id) for r in followers if r.log_id in found]
        return followers, blob.batch_file(storage, lines)

    async def _record(
        self,
        row: queue.Claimed,
        target: DeliveryTarget,
        attempt_at: str,
        outcome: Outcome,
        followers: list[queue.Claimed],
    ) -> queue.Claimed | None:
        """Records the attempt, for a batch's followers too (one file, one outcome);
        returns the lane's next row when it was handed on to this worker."""
        retry_at = None
        if not outcome.ok:
            settings = target.delivery
            retry_at = schedule.next_attempt(
                failures=row.attempts + 1,
                mode=str(settings.mode),
                now=clock.utcnow(),
                accepted_at=clock.parse(row.enqueued_at),
                max_retry_seconds=settings.max_retry_seconds,
                retry_after=schedule.retry_after_seconds(outcome.retry_after),
                scale=self.rt.settings.retry_scale,
            ).retry_at
        batch = target.delivery.batch
        handed_off = None
        async with self.rt.db.write() as conn:
            if outcome.ok or retry_at is None:
                status = "succeeded" if outcome.ok else "failed"
                now = clock.utcnow()
                removed = await queue.finish(
                    conn,
                    row,
                    owner=self.owner,
                    postgres=self._postgres,
                    now=clock.format(now),
                    # A stopping worker takes nothing more on.
                    lease_until=None if self._stopping else clock.after(self._lease_seconds, now),
                    followers=followers,
                    batch_max=None if batch is None else batch.max_messages,
                )
                ours, handed_off = removed.ours, removed.handed_off
            else:
                status = "pending"
                ours = await queue.retry(
                    conn,
                    row,
                    owner=self.owner,
                    due=clock.format(retry_at),
                    next_attempt_id=new_id(),
                    followers=followers,
                    follower_attempt_ids=[new_id() for _ in followers],
                )
            # A row no longer ours was settled meanwhile (deleted with its destination, or
            # claimed by another worker after our lease ran out): the attempt is history only.
            for each in (row, *followers):
                await logs.record_attempt(
                    conn,
                    log_id=each.log_id,
                    attempt=logs.Attempt(
                        id=each.attempt_id,
                        attempt_at=attempt_at,
                        status="succeeded" if outcome.ok else "failed",
                        http_status=outcome.http_status,
                        error=outcome.error,
                        duration_ms=outcome.duration_ms,
                    ),
                    status=status if ours else None,
                    reason=outcome.error if status == "failed" else None,
                    file_name=outcome.file_name if outcome.ok else None,
                )
        return handed_off

    async def _postpone(self, row: queue.Claimed, reason: str) -> None:
        wait = schedule.wait_after(row.attempts + 1, "fifo") or schedule.FIFO_THEN_EVERY
        due = clock.after(wait * self.rt.settings.retry_scale)
        attempt = logs.Attempt(
            id=row.attempt_id,
            attempt_at=clock.now(),
            status="failed",
            http_status=None,
            error=reason,
            duration_ms=0,
        )
        async with self.rt.db.write() as conn:
            ours = await queue.retry(conn, row, owner=self.owner, due=due, next_attempt_id=new_id())
            await logs.record_attempt(
                conn, log_id=row.log_id, attempt=attempt, status="pending" if ours else None
            )

    async def _give_up(self, row: queue.Claimed, reason: str) -> None:
        async with self.rt.db.write() as conn:
            removed = await queue.finish(conn, row, owner=self.owner, postgres=self._postgres)
            if removed.ours:
                await logs.fail(conn, log_ids=[row.log_id], reason=reason, at=clock.now())

    async def _listen(self) -> None:
        """PostgreSQL: ingest's NOTIFY (sent on COMMIT) wakes this worker at once."""
        url = self.rt.settings.resolved_database_url()
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")
                    self._wake.set()  # anything that arrived while not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error as exc:
                log.warning("delivery: listening for new work failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
