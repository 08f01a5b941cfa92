"""On PostgreSQL, new work wakes the workers of other processes at COMMIT (NOTIFY), not
on their polling tick: a message that heads its lane is news, one that waits behind its
lane's head is not (its head's worker hands it on)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from tests.support import scratch_postgres_database
from waypost import clock
from waypost.db import Database, migrate, new_id
from waypost.queue import service as queue


@pytest.fixture(scope="module")
def database_url(postgres_server_url: str) -> Iterator[str]:
    with scratch_postgres_database(postgres_server_url) as url:
        migrate(url)
        yield url


def _entry(destination_id: str, lane: str, *, shared: bool) -> queue.Entry:
    log_id = new_id()
    return queue.Entry(
        log_id=log_id,
        destination_id=destination_id,
        lane=lane if shared else log_id,
        shared_lane=shared,
        held=False,
        first_attempt_id=new_id(),
    )


def _notifications_after(url: str, entries: list[queue.Entry]) -> int:
    """Enqueues the entries in one transaction; how many notifications a listener on
    another connection then gets on the queue's channel."""
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")

        async def enqueue() -> bool:
            db = Database(url, pool_size=1)
            try:
                async with db.write() as conn:
                    return await queue.enqueue(conn, entries, at=clock.now(), postgres=True)
            finally:
                await db.close()

        asyncio.run(enqueue())
        # Notifications arrive in commit order: everything the enqueue sent comes before
        # this marker, so there is no waiting for ones that will never come.
        listener.execute("SELECT pg_notify(%s, 'end')", (queue.NOTIFY_CHANNEL,))
        count = 0
        for notification in listener.notifies():
            if notification.payload == "end":
                return count
            count += 1
        raise AssertionError("the listener stopped before the marker")


def test_a_new_lane_head_notifies_other_processes(database_url: str) -> None:
    destination = new_id()
    assert _notifications_after(database_url, [_entry(destination, "", shared=False)]) == 1
    # Several heads in one transaction: one notification (PostgreSQL folds the same one).
    several = [_entry(destination, "", shared=False) for _ in range(3)]
    assert _notifications_after(database_url, several) == 1


def test_a_message_behind_its_lane_head_does_not(database_url: str) -> None:
    destination = new_id()
    first = _entry(destination, destination, shared=True)
    assert _notifications_after(database_url, [first]) == 1
    behind = _entry(destination, destination, shared=True)
    assert _notifications_after(database_url, [behind]) == 0
