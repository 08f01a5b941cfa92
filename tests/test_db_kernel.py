"""The database kernel on both engines: prepared statements that return rows from
INSERT/UPDATE ... RETURNING and fetch many rows, constraint errors told apart by the
engines' codes, and the guard that refuses outbound I/O inside a write transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import scratch_postgres_database
from waypost.db import (
    Database,
    IOInsideWrite,
    Prepared,
    driver_url,
    is_foreign_key_violation,
    is_unique_violation,
    refuse_inside_write,
)
from waypost.outbound import OutboundClient

# A schema of its own, so these tests need no migrations and touch no feature's tables.
schema = sa.MetaData()
parents = sa.Table(
    "parents",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(32), nullable=False, unique=True),
    sa.Column("tags", sa.JSON, nullable=True),
)
children = sa.Table(
    "children",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id"), nullable=False),
)

insert_parent = Prepared(
    parents.insert()
    .values(id=sa.bindparam("id"), name=sa.bindparam("name"), tags=sa.bindparam("tags"))
    .returning(parents.c.id, parents.c.tags)
)
rename_parent = Prepared(
    parents.update()
    .where(parents.c.id == sa.bindparam("parent_id"))
    .values(name=sa.bindparam("new_name"))
    .returning(parents.c.id, parents.c.name)
)
parents_from = Prepared(
    sa.select(parents.c.id, parents.c.name, parents.c.tags)
    .where(parents.c.id >= sa.bindparam("lowest"))
    .order_by(parents.c.id)
)
insert_child = Prepared(children.insert())


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kernel.db'}"
        return
    with scratch_postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    engine = sa.create_engine(driver_url(database_url))
    schema.create_all(engine)
    engine.dispose()
    database = Database(database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


async def test_an_insert_returning_answers_its_row_converted(db: Database) -> None:
    async with db.write() as conn:
        row = await conn.first(insert_parent, {"id": 1, "name": "a", "tags": {"k": [1]}})
    assert row == {"id": 1, "tags": {"k": [1]}}
    async with db.read() as conn:
        assert await conn.all(parents_from, {"lowest": 0}) == [
            {"id": 1, "name": "a", "tags": {"k": [1]}}
        ]


async def test_an_update_returning_answers_the_changed_row_or_none(db: Database) -> None:
    async with db.write() as conn:
        await conn.first(insert_parent, {"id": 1, "name": "a", "tags": None})
        changed = await conn.first(rename_parent, {"parent_id": 1, "new_name": "b"})
        missing = await conn.first(rename_parent, {"parent_id": 2, "new_name": "c"})
    assert changed == {"id": 1, "name": "b"}
    assert missing is None
    async with db.read() as conn:
        assert [r["name"] for r in await conn.all(parents_from, {"lowest": 0})] == ["b"]


async def test_all_fetches_every_row_in_order_and_an_empty_list_for_none(db: Database) -> None:
    async with db.write() as conn:
        for i in (3, 1, 2):
            await conn.first(insert_parent, {"id": i, "name": f"p{i}", "tags": [i]})
    async with db.read() as conn:
        rows = await conn.all(parents_from, {"lowest": 2})
        none = await conn.all(parents_from, {"lowest": 10})
    assert rows == [{"id": 2, "name": "p2", "tags": [2]}, {"id": 3, "name": "p3", "tags": [3]}]
    assert none == []


async def _integrity_error(
    db: Database, prepared: Prepared, params: dict[str, object]
) -> sa.exc.IntegrityError:
    with pytest.raises(sa.exc.IntegrityError) as caught:
        async with db.write() as conn:
            await conn.run(prepared, params)
    return caught.value


async def test_unique_and_foreign_key_violations_are_told_apart_by_code(db: Database) -> None:
    async with db.write() as conn:
        await conn.first(insert_parent, {"id": 1, "name": "a", "tags": None})
    taken_key = await _integrity_error(db, insert_parent, {"id": 1, "name": "b", "tags": None})
    taken_name = await _integrity_error(db, insert_parent, {"id": 2, "name": "a", "tags": None})
    orphan = await _integrity_error(db, insert_child, {"id": 1, "parent_id": 99})
    for unique in (taken_key, taken_name):
        assert is_unique_violation(unique) and not is_foreign_key_violation(unique)
    assert is_foreign_key_violation(orphan) and not is_unique_violation(orphan)


async def test_the_same_errors_are_recognised_through_sqlalchemy_execution(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(parents.insert(), {"id": 1, "name": "a"})
    with pytest.raises(sa.exc.IntegrityError) as caught:
        async with db.write() as conn:
            await conn.execute(parents.insert(), {"id": 2, "name": "a"})
    assert is_unique_violation(caught.value)
    with pytest.raises(sa.exc.IntegrityError) as caught:
        async with db.write() as conn:
            await conn.execute(children.insert(), {"id": 1, "parent_id": 5})
    assert is_foreign_key_violation(caught.value)


async def test_outbound_http_inside_a_write_transaction_fails_loudly(db: Database) -> None:
    client = OutboundClient()
    try:
        with pytest.raises(IOInsideWrite, match="inside a write transaction"):
            async with db.write() as conn:
                await conn.first(insert_parent, {"id": 1, "name": "a", "tags": None})
                await client.request("GET", "http://127.0.0.1:9/", timeout_seconds=1)
        # The transaction the mistake happened in is rolled back.
        async with db.read() as conn:
            assert await conn.all(parents_from, {"lowest": 0}) == []
    finally:
        await client.close()


async def test_the_guard_is_off_outside_write_transactions_and_after_them(db: Database) -> None:
    refuse_inside_write("a read")  # nothing open: no error
    async with db.read():
        refuse_inside_write("a read")
    with pytest.raises(IOInsideWrite):
        async with db.write():
            refuse_inside_write("a call")
    refuse_inside_write("a call after the write")


async def test_any_statement_runs_alike_on_both_engines(db: Database) -> None:
    # On PostgreSQL `execute` compiles and runs on the driver itself: what SQLAlchemy's
    # execution did must still hold (IN lists, many parameter sets, JSON both ways,
    # rowcount, text(), the Result methods the stores use).
    async with db.write() as conn:
        await conn.execute(
            parents.insert(),
            [{"id": i, "name": f"p{i}", "tags": {"n": i}} for i in (1, 2, 3)],
        )
        renamed = await conn.execute(
            parents.update().where(parents.c.id.in_([1, 3])).values(name=parents.c.name + "x")
        )
        assert renamed.rowcount == 2
        returned = await conn.execute(
            parents.update().where(parents.c.id == 2).values(tags=["t"]).returning(parents.c.tags)
        )
        assert returned.scalar_one() == ["t"]
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(parents).order_by(parents.c.id))).all()
        assert [(r.id, r.name, r.tags) for r in rows] == [
            (1, "p1x", {"n": 1}),
            (2, "p2", ["t"]),
            (3, "p3x", {"n": 3}),
        ]
        named = await conn.execute(
            sa.select(parents.c.name).where(parents.c.id.in_([2, 3])).order_by(parents.c.id)
        )
        assert list(named.scalars()) == ["p2", "p3x"]
        # An IN list beside a parameter given only now (it once failed on PostgreSQL: the
        # list was expanded before the parameter had a value).
        beside = await conn.execute(
            sa.select(parents.c.id)
            .where(parents.c.id.not_in([1]), parents.c.id <= sa.bindparam("most"))
            .order_by(parents.c.id),
            {"most": 2},
        )
        assert list(beside.scalars()) == [2]
        mapped = (await conn.execute(sa.select(parents.c.id).where(parents.c.id == 1))).mappings()
        assert [dict(m) for m in mapped.all()] == [{"id": 1}]
        assert await conn.scalar(sa.select(sa.func.count()).select_from(parents)) == 3
        assert await conn.scalar(sa.text("SELECT :x + 1"), {"x": 41}) == 42
        nothing = await conn.execute(sa.select(parents).where(parents.c.id == 9))
        assert nothing.first() is None
