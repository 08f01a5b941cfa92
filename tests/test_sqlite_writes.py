"""SQLite writers share a transaction and commit in batches; each must still behave as
if it had its own: its changes all or nothing, and durable before it returns."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from waypost.db import Database, _SqliteWrites

MAX_BATCH = _SqliteWrites.MAX_BATCH

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


class OtherProcess:
    """A reader of the database in a process of its own, asked over a pipe whether a note
    is there: what it sees is on disk, not in this process's connection or cache."""

    SCRIPT = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "for line in sys.stdin:\n"
        "    found = conn.execute('SELECT count(*) FROM notes WHERE text = ?', (line.strip(),))\n"
        "    print(found.fetchone()[0], flush=True)\n"
    )

    def __init__(self, path: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def sees(self, value: str) -> bool:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(value + "\n")
        self._process.stdin.flush()
        return self._process.stdout.readline().strip() == "1"

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)


@pytest.mark.parametrize("writers", [64, 65, 200])
async def test_concurrent_writers_share_commits_and_each_sees_its_write_durable(
    db: Database, tmp_path: Path, writers: int
) -> None:
    commits = 0
    other = OtherProcess(tmp_path / "writes.db")

    async def write_then_read(value: str) -> bool:
        async with db.write() as conn:
            await conn.execute(notes.insert().values(text=value))
        # Returned: the change is committed, so another process reads it from the file.
        return other.sees(value)

    def count_commits(statement: str) -> None:
        nonlocal commits
        commits += statement == "COMMIT"

    async with db.write() as conn:
        driver = conn.driver  # type: ignore[attr-defined]
    assert not other.sees("n0")
    driver.set_trace_callback(count_commits)
    try:
        seen = await asyncio.gather(*(write_then_read(f"n{i}") for i in range(writers)))
    finally:
        driver.set_trace_callback(None)
        other.close()
    assert all(seen)
    # Full batches: one COMMIT per MAX_BATCH writers that arrived together.
    assert commits == math.ceil(writers / MAX_BATCH), commits
    assert len(await texts(db)) == writers


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
