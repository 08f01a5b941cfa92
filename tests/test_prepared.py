"""Prepared statements run straight on SQLite's driver; what needs SQLAlchemy's execution
context must be refused when the plan is made, never run half-handled."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from tests.support import scratch_postgres_database
from waypost.db import Database, Prepared
from waypost.destinations.tables import destinations


def test_an_insert_that_leaves_a_python_default_to_sqlalchemy_is_refused() -> None:
    # `verified` has a Python-side default, which only SQLAlchemy's execution fills in.
    insert = Prepared(destinations.insert())
    with pytest.raises(ValueError, match="not a statement to prepare"):
        insert.plan(sqlite.dialect(), frozenset({"id", "name"}))


def test_an_expanding_parameter_is_refused() -> None:
    query = Prepared(
        sa.select(destinations.c.id).where(
            destinations.c.id.in_(sa.bindparam("ids", expanding=True))
        )
    )
    with pytest.raises(ValueError, match="not a statement to prepare"):
        query.plan(sqlite.dialect(), frozenset({"ids"}))


def test_parameters_go_in_statement_order_through_the_type_processors() -> None:
    update = Prepared(
        destinations.update()
        .where(destinations.c.seq == sa.bindparam("row_seq"))
        .values(setup_state=sa.bindparam("state"), verified=sa.bindparam("ok"))
    )
    plan = update.plan(sqlite.dialect(), frozenset({"row_seq", "state", "ok"}))
    values = plan.parameters({"ok": True, "row_seq": 7, "state": {"step": "a"}})
    assert values == ['{"step": "a"}', 1, 7]


def test_result_columns_come_back_by_name_converted() -> None:
    query = Prepared(sa.select(destinations.c.verified, destinations.c.setup_state))
    plan = query.plan(sqlite.dialect(), frozenset())
    assert plan.row((0, '{"step": "a"}')) == {"verified": False, "setup_state": {"step": "a"}}


async def test_on_postgresql_a_dropped_connection_fails_one_statement_not_the_next(
    postgres_server_url: str,
) -> None:
    with scratch_postgres_database(postgres_server_url) as url:
        db = Database(url, pool_size=1)
        one = Prepared(sa.select(sa.literal_column("1").label("one")))
        try:
            async with db.read() as conn:
                pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
            # From outside the pool, as an administrator or a server restart would.
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(sa.exc.OperationalError):
                async with db.read() as conn:
                    await conn.first(one, {})
            # The transaction's rollback found the connection dead and dropped it.
            async with db.read() as conn:
                assert await conn.first(one, {}) == {"one": 1}
        finally:
            await db.close()
