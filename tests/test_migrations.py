"""Migrations, on SQLite and PostgreSQL: they build exactly the schema the code declares,
and they carry a database that holds data from every earlier revision up to head.

The revisions are read from the migrations directory, so a new one is covered as soon as
it exists; the declared schema is `waypost.db.metadata` with every feature's tables
module imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import waypost
from tests.support import scratch_postgres_database
from waypost.db import driver_url, metadata, migrate


def declared_metadata() -> sa.MetaData:
    """The shared MetaData, with every `tables` module of the package imported."""
    for module in pkgutil.walk_packages(waypost.__path__, "waypost."):
        if module.name.rsplit(".", 1)[-1] == "tables":
            importlib.import_module(module.name)
    return metadata


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(waypost.__file__).parent / "migrations"))
    return config


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def upgrade(url: str, revision: str) -> None:
    config = alembic_config()
    engine = sa.create_engine(driver_url(url))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    server_url = request.getfixturevalue("postgres_server_url")
    with scratch_postgres_database(server_url) as url:
        yield url


def test_migrations_build_exactly_the_declared_schema(empty_database: str) -> None:
    migrate(empty_database)
    declared = declared_metadata()
    engine = sa.create_engine(driver_url(empty_database))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": False}
            )
            differences = [
                d for d in compare_metadata(context, declared) if not _unique_constraint(d)
            ]
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names()) - {"alembic_version"}
            built = {name: _unique_column_sets_built(inspector, name) for name in tables}
    finally:
        engine.dispose()
    assert differences == [], "\n".join(map(str, differences))
    assert tables == set(declared.tables)
    wanted = {name: _unique_column_sets_declared(t) for name, t in declared.tables.items()}
    assert built == wanted


def _unique_constraint(difference: Any) -> bool:
    """Unique constraints are compared by their columns below: alembic compares them by
    name, and SQLite reflects the names of none of them."""
    return (
        isinstance(difference, tuple)
        and difference[0] in ("add_constraint", "remove_constraint")
        and isinstance(difference[1], sa.UniqueConstraint)
    )


def _unique_column_sets_built(inspector: sa.Inspector, table: str) -> set[tuple[str, ...]]:
    found = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
    found |= {
        tuple(str(name) for name in i["column_names"])
        for i in inspector.get_indexes(table)
        if i["unique"]
    }
    pk = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
    return {cols for cols in found if cols != pk}


def _unique_column_sets_declared(table: sa.Table) -> set[tuple[str, ...]]:
    found = {
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    }
    found |= {(c.name,) for c in table.columns if c.unique}
    found |= {tuple(c.name for c in i.columns) for i in table.indexes if i.unique}
    pk = tuple(c.name for c in table.primary_key.columns)
    return {cols for cols in found if cols != pk}


def synthetic_value(column: sa.Column[Any], n: int) -> Any:
    """A value of the column's type that fits its length, distinct per row `n`."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return n % 2 == 0
    if isinstance(kind, sa.Integer):
        return n + 1
    if isinstance(kind, sa.Float | sa.Numeric):
        return n + 0.5
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC)
    if isinstance(kind, sa.JSON):
        return {"n": n}
    if isinstance(kind, sa.LargeBinary):
        return bytes([n]) * 8
    if isinstance(kind, sa.String):
        text = f"00000000-0000-4000-8000-{n:012d}"  # a uuid: what most text ids hold
        length = kind.length
        return text if length is None or length >= len(text) else f"{n}"[:length]
    raise AssertionError(f"no synthetic value for {column.table.name}.{column.name}: {kind!r}")


def fill(conn: sa.Connection, rows_per_table: int = 2) -> dict[str, int]:
    """Puts `rows_per_table` rows in every table the schema has at this revision (found by
    reflection), parents before children, each foreign key naming a parent row. Columns
    that may be left out (nullable, defaulted, autoincremented) are left out unless a
    foreign key needs them. Returns each table's row count."""
    reflected = sa.MetaData()
    reflected.reflect(conn)
    counts = {}
    for table in reflected.sorted_tables:
        if table.name == "alembic_version":
            continue
        for n in range(rows_per_table):
            row: dict[str, Any] = {}
            for column in table.columns:
                optional = (
                    column.nullable
                    or column.server_default is not None
                    or (column.autoincrement is True and column.primary_key)
                    or (
                        column.primary_key
                        and isinstance(column.type, sa.Integer)
                        and len(table.primary_key.columns) == 1
                    )
                )
                if optional and not column.foreign_keys:
                    continue
                row[column.name] = synthetic_value(column, n)
            for constraint in table.foreign_key_constraints:
                parent = conn.execute(
                    sa.select(*(e.column for e in constraint.elements)).limit(1).offset(n)
                ).first()
                assert parent is not None, f"no {constraint.referred_table.name} row for {table}"
                for element, value in zip(constraint.elements, parent, strict=True):
                    row[element.parent.name] = value
            conn.execute(table.insert().values(row))
        counts[table.name] = rows_per_table
    return counts


def count_rows(conn: sa.Connection, tables: list[str]) -> dict[str, int]:
    reflected = sa.MetaData()
    reflected.reflect(conn, only=tables)
    return {
        name: conn.scalar(sa.select(sa.func.count()).select_from(reflected.tables[name])) or 0
        for name in tables
    }


@pytest.mark.parametrize("revision", revisions()[:-1])
def test_a_database_with_data_migrates_from_each_revision_to_head(
    empty_database: str, revision: str
) -> None:
    upgrade(empty_database, revision)
    engine = sa.create_engine(driver_url(empty_database))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            before = fill(conn)
        migrate(empty_database)
        with engine.connect() as conn:
            after = count_rows(conn, list(before))
            at = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    finally:
        engine.dispose()
    assert at == revisions()[-1]
    # Nothing that was there is lost (a migration may add rows, never drop them).
    lost = {name: (count, after[name]) for name, count in before.items() if after[name] < count}
    assert not lost, lost
