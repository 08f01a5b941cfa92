"""SQLite writers share a transaction and commit in batches; each must still behave as
if it had its own: its changes all or nothing, and durable before it returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from waypost.db import Database

notes = sa.table("notes", sa.column("text"))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'writes.db'}")
    async with database.write() as conn:
        await conn.execute(sa.text("CREATE TABLE notes (text TEXT NOT NULL UNIQUE)"))
    yield database
    await database.close()


async def texts(db: Database) -> set[str]:
    async with db.read() as conn:
        return {row.text for row in (await conn.execute(sa.select(notes.c.text))).all()}


async def write(db: Database, *values: str) -> None:
    async with db.write() as conn:
        for value in values:
            await conn.execute(notes.insert().values(text=value))


async def test_a_failing_writer_loses_only_its_own_changes(db: Database) -> None:
    await write(db, "taken")
    results = await asyncio.gather(
        write(db, "a1", "a2"),
        write(db, "b1", "taken"),  # b1 is written, then the duplicate fails
        write(db, "c1"),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], sa.exc.IntegrityError)
    assert await texts(db) == {"taken", "a1", "a2", "c1"}


async def test_concurrent_writers_share_commits_and_each_sees_its_write_durable(
    db: Database,
) -> None:
    commits = 0

    async def write_then_read(value: str) -> bool:
        async with db.write() as conn:
            await conn.execute(notes.insert().values(text=value))
        # Returned: the change is committed, so the separate read connection sees it.
        return value in await texts(db)

    def count_commits(statement: str) -> None:
        nonlocal commits
        commits += statement == "COMMIT"

    async with db.write() as conn:
        driver = conn.driver  # type: ignore[attr-defined]
    driver.set_trace_callback(count_commits)
    seen = await asyncio.gather(*(write_then_read(f"n{i}") for i in range(50)))
    driver.set_trace_callback(None)
    assert all(seen)
    assert 1 <= commits < 50, commits
    assert len(await texts(db)) == 50


async def test_a_writer_cancelled_while_its_batch_commits_keeps_its_changes(
    db: Database,
) -> None:
    task = asyncio.create_task(write(db, "kept"))
    await asyncio.sleep(0)  # the write is in; its COMMIT is scheduled, not yet run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    await write(db, "after")  # and the next batch works as usual
    assert await texts(db) == {"kept", "after"}


async def test_a_failed_writer_alone_commits_nothing_and_leaves_the_next_one_working(
    db: Database,
) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(notes.insert().values(text="dropped"))
            raise RuntimeError("the service refused")
    await write(db, "next")
    assert await texts(db) == {"next"}
