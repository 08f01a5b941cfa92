"""Claiming, on both engines: a claim leaves out the destinations it is told to skip (those
at their concurrency), and gives back at once what the caller does not keep.

(On PostgreSQL a claim with destinations to skip once failed to compile, and the worker
paused a second after each such round: this runs it for real.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import scratch_postgres_database
from waypost import clock
from waypost.db import Database, migrate, new_id
from waypost.queue import service as queue


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'claims.db'}"
        migrate(url)
        yield url
        return
    with scratch_postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        migrate(url)
        yield url


def _unordered(destination_id: str) -> queue.Entry:
    log_id = new_id()
    return queue.Entry(
        log_id=log_id,
        destination_id=destination_id,
        lane=log_id,
        shared_lane=False,
        held=False,
        first_attempt_id=new_id(),
    )


async def _claims(url: str) -> tuple[set[str], str, set[str], set[str]]:
    """Queues two messages for each of destinations A and B; then one worker claims
    skipping A and keeps one row, and a second worker claims everything left."""
    db = Database(url, pool_size=2)
    postgres = db.dialect == "postgresql"
    a, b = new_id(), new_id()
    entries = [_unordered(a), _unordered(b), _unordered(a), _unordered(b)]
    try:
        async with db.write() as conn:
            await queue.enqueue(conn, entries, at=clock.now(), postgres=postgres)

        async def claim(owner: str, skip: list[str], keep: int) -> list[queue.Claimed]:
            async with db.write(transaction=False) as conn:
                return await queue.claim(
                    conn,
                    owner=owner,
                    now=clock.after(1),
                    lease_until=clock.after(60),
                    limit=10,
                    skip=skip,
                    choose=lambda found: found[:keep],
                    postgres=postgres,
                )

        first = await claim("first", [a], keep=1)
        second = await claim("second", [], keep=10)
    finally:
        await db.close()
    by_log = {e.log_id: e.destination_id for e in entries}
    return (
        {by_log[r.log_id] for r in first},
        b,
        {r.log_id for r in first},
        {r.log_id for r in second},
    )


def test_a_claim_skips_destinations_and_gives_back_what_it_does_not_keep(
    database_url: str,
) -> None:
    destinations, b, first, second = asyncio.run(_claims(database_url))
    assert len(first) == 1 and destinations == {b}  # one of B's, none of A's
    assert len(second) == 3  # B's other row (given back at once) and both of A's
    assert not first & second
