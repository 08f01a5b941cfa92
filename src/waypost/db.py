"""Engine, shared MetaData, dialect differences and the migrations runner."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class DatabaseUrlError(ValueError):
    pass


def driver_url(plain: str, *, asynchronous: bool) -> sa.URL:
    """Maps a plain sqlite:// or postgresql:// URL onto the driver Waypost uses."""
    try:
        url = make_url(plain)
    except sa.exc.ArgumentError as exc:
        raise DatabaseUrlError(f"WAYPOST_DATABASE_URL is not a URL: {plain!r}") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise DatabaseUrlError(
        f"WAYPOST_DATABASE_URL must start with sqlite:// or postgresql://, not {backend}://"
    )


def now() -> str:
    # One fixed-width UTC text format on both engines: it sorts as it reads.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


def _sqlite_connection_setup(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A write takes the lock up front: a deferred transaction that upgrades later
        # fails with SQLITE_BUSY instead of waiting.
        write = conn.get_execution_options().get("waypost_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """The async engine plus the two ways in: a read and a write transaction."""

    def __init__(self, plain_url: str, *, pool_size: int = 20) -> None:
        self.url = driver_url(plain_url, asynchronous=True)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine: AsyncEngine = create_async_engine(self.url, pool_size=pool_size)
            _sqlite_connection_setup(self.engine.sync_engine)
        else:
            self.engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(waypost_write=True)
            async with conn.begin():
                yield conn

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate key" in text


def migrate(plain_url: str) -> None:
    """Brings the schema to the latest revision. Safe to run from several processes."""
    from alembic import command
    from alembic.config import Config

    url = driver_url(plain_url, asynchronous=False)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if url.get_backend_name() == "postgresql":
                # Several API and worker processes may start at once; one migrates.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7303715)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()
