"""Engine, shared MetaData, dialect differences and the migrations runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData

log = logging.getLogger("waypost.db")

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


class IOInsideWrite(RuntimeError):
    """Real I/O was started inside a write transaction. On SQLite every other writer
    waits for its turn while it runs, and on PostgreSQL it holds row locks for a network
    round trip: a programming error, so it fails loudly rather than being handled."""


# True while the current task is inside `Database.write()`.
_in_write: ContextVar[bool] = ContextVar("waypost_in_write", default=False)


def refuse_inside_write(what: str) -> None:
    """Called before real I/O (outbound HTTP): raises IOInsideWrite inside a write."""
    if _in_write.get():
        raise IOInsideWrite(f"{what} inside a write transaction; do it before or after")


def driver_url(plain: str) -> sa.URL:
    """Maps a plain sqlite:// or postgresql:// URL onto a synchronous SQLAlchemy engine's
    driver: the standard library's sqlite3, and psycopg 3 (migrations and scripts; the
    running server talks to PostgreSQL through asyncpg, see `Database`)."""
    try:
        url = make_url(plain)
    except sa.exc.ArgumentError as exc:
        raise DatabaseUrlError(f"WAYPOST_DATABASE_URL is not a URL: {plain!r}") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise DatabaseUrlError(
        f"WAYPOST_DATABASE_URL must start with sqlite:// or postgresql://, not {backend}://"
    )


def new_id() -> str:
    """A UUIDv7 (RFC 9562): a millisecond timestamp, then 74 random bits. Ids made in
    order land at the end of their index instead of on a random page, which keeps
    inserts cheap; they remain ordinary uuids to clients."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10)) & (2**80 - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return str(uuid.UUID(int=value))


def canonical_id(value: str) -> str | None:
    """The stored form of a uuid from a URL, or None when it cannot name anything
    (so that no malformed value ever reaches a query)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _sqlite_connection_setup(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver: reads run each statement in its own implicit
        # transaction, and writes say BEGIN IMMEDIATE themselves (_SqliteWrites).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        # Checkpoints run in the background (_Checkpointer); this is only the backstop
        # that bounds the WAL (about 40 MB) should that thread ever fall behind.
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()


class Prepared:
    """A statement built once and run on every request: the hot paths' lookups and inserts.

    SQLAlchemy's bookkeeping for each execution (an execution context, result metadata,
    row objects) costs several times what a local SQLite statement itself takes, and
    more than a PostgreSQL round trip on loopback. A prepared statement therefore runs
    straight on the driver, on the transaction's own connection: compiled once per
    dialect and set of parameter names (they decide an INSERT's columns), with
    SQLAlchemy's own type processors applied to parameters and results. On PostgreSQL
    asyncpg also prepares it on the server once per connection. Run one with
    `Connection.first` (one row, also of an INSERT or UPDATE ... RETURNING), `.all` or
    `.run`.
    """

    def __init__(self, statement: sa.Select[Any] | sa.Insert | sa.Update | sa.Delete) -> None:
        self.statement = statement
        self._plans: dict[tuple[type[sa.Dialect], frozenset[str]], _Plan] = {}

    def plan(self, dialect: sa.Dialect, names: frozenset[str]) -> _Plan:
        key = (type(dialect), names)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan.compile(self.statement, dialect, names)
        return plan


def among(column: str, name: str, *, postgres: bool, negated: bool = False) -> sa.TextClause:
    """`column` is (`negated`: is not) one of the strings given as parameter `name`
    (pass them through `as_list`): one statement to prepare whatever their number, where
    SQLAlchemy's IN compiles a new one for each number. `column` and `name` come from
    the code, never from a request."""
    if postgres:
        test = "<> ALL" if negated else "= ANY"
        return sa.text(f"{column} {test}(CAST(:{name} AS text[]))")
    test = "NOT IN" if negated else "IN"
    return sa.text(f"{column} {test} (SELECT value FROM json_each(:{name}))")  # noqa: S608


def as_list(values: Iterable[str], conn: Connection) -> Any:
    """Strings as `among` takes them on this connection's engine."""
    if conn.dialect.name == "postgresql":
        return list(values)
    return orjson.dumps(list(values)).decode()


_REQUIRED = object()
Processor = Callable[[Any], Any] | None


def _result_shape(
    statement: sa.Executable, dialect: sa.Dialect
) -> tuple[tuple[str, ...], tuple[Processor, ...] | None]:
    """A SELECT's columns, or an INSERT, UPDATE or DELETE's RETURNING columns, and their
    result processors (None when no column needs converting)."""
    exported = getattr(statement, "exported_columns", None)
    if exported is None:  # text(): the driver's column names, as they come
        return (), None
    returned = list(exported)
    columns = tuple(key for key in exported.keys() if key is not None)
    if len(set(columns)) != len(returned):
        raise ValueError(f"statements run on the driver need distinct column names: {columns}")
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in returned)
    return columns, results if any(results) else None


def _bind_processor(param: sa.BindParameter[Any], dialect: sa.Dialect) -> Processor:
    return param.type.dialect_impl(dialect).bind_processor(dialect)


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    positional: bool  # sqlite3 and asyncpg take a list; a named style takes names
    binds: tuple[tuple[str, Any, Processor], ...]  # name, default or _REQUIRED, processor
    columns: tuple[str, ...]
    results: tuple[Processor, ...] | None  # None when no column needs converting
    returning: bool  # a change that answers rows

    @classmethod
    def compile(
        cls,
        statement: sa.Select[Any] | sa.Insert | sa.Update | sa.Delete,
        dialect: sa.Dialect,
        names: frozenset[str],
    ) -> _Plan:
        compiled: Any = statement.compile(dialect=dialect, column_keys=sorted(names))
        if compiled.insert_prefetch or compiled.post_compile_params:
            # Column defaults and expanding parameters need SQLAlchemy's execution context.
            raise ValueError(f"not a statement to prepare: {statement}")
        positional = compiled.positiontup is not None
        binds = []
        for name in compiled.positiontup if positional else compiled.binds:
            param = compiled.binds[name]
            default = _REQUIRED if param.required else param.effective_value
            binds.append((name, default, _bind_processor(param, dialect)))
        columns, results = _result_shape(statement, dialect)
        returning = bool(columns) and not isinstance(statement, sa.Select)
        return cls(str(compiled), positional, tuple(binds), columns, results, returning)

    def parameters(self, given: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        values = []
        for name, default, process in self.binds:
            value = given[name] if default is _REQUIRED else given.get(name, default)
            values.append(process(value) if process is not None else value)
        if self.positional:
            return values
        return dict(zip((name for name, _, _ in self.binds), values, strict=True))

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        if self.results is not None:
            values = [
                p(v) if p is not None else v for p, v in zip(self.results, values, strict=True)
            ]
        return dict(zip(self.columns, values, strict=True))


class Result(IteratorResult[Any]):
    """The rows of `Connection.execute`, with SQLAlchemy's Result methods (`all`,
    `first`, `scalar`, `scalar_one`, `scalars`, `mappings`...), and `rowcount`: the rows
    an INSERT, UPDATE or DELETE touched."""

    def __init__(self, keys: Sequence[str], rows: Iterable[Sequence[Any]], rowcount: int) -> None:
        super().__init__(SimpleResultMetaData(keys), iter(rows))
        self.rowcount = rowcount


class Connection:
    """What services use inside a transaction, awaited: `execute` and `scalar` for any
    statement, `first` and `run` for a `Prepared` one.

    Two implementations, chosen by the engine: PostgreSQL runs them on asyncpg (see
    `_PostgresConnection`); SQLite runs them inline (see `_InlineConnection`).
    """

    dialect: sa.Dialect

    async def execute(self, statement: sa.Executable, parameters: Params = None) -> Result:
        raise NotImplementedError

    async def scalar(
        self, statement: sa.Executable, parameters: Mapping[str, Any] | None = None
    ) -> Any:
        return (await self.execute(statement, parameters)).scalar()

    async def first(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """The first row, by column name, or None."""
        raise NotImplementedError

    async def all(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        """Every row, by column name."""
        raise NotImplementedError

    async def run(self, prepared: Prepared, parameters: Mapping[str, Any]) -> int:
        """Runs an INSERT, UPDATE or DELETE; returns the number of rows it touched."""
        raise NotImplementedError


Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


# --- PostgreSQL -------------------------------------------------------------------------

# The SQL and the type processors of SQLAlchemy's asyncpg dialect; its engine is not used.
_POSTGRES = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


def _postgres_error(exc: Exception, sql: str) -> Exception:
    """The exception SQLAlchemy's own execution would raise (IntegrityError and so on), by
    the SQLSTATE class, so that callers handle one kind whichever way a statement ran.
    Anything that is not the server's answer (a lost connection) is an OperationalError."""
    kind: type[sa.exc.DBAPIError] = sa.exc.OperationalError
    if isinstance(exc, asyncpg.PostgresError):
        kind = _SQLSTATE_CLASSES.get((exc.sqlstate or "")[:2], sa.exc.DatabaseError)
    elif isinstance(exc, asyncpg.DataError):  # a parameter of the wrong type, refused here
        kind = sa.exc.DataError
    return kind(sql, None, exc)


_SQLSTATE_CLASSES: dict[str, type[sa.exc.DBAPIError]] = {
    "22": sa.exc.DataError,
    "23": sa.exc.IntegrityError,
    "42": sa.exc.ProgrammingError,
    "0A": sa.exc.NotSupportedError,
    "XX": sa.exc.InternalError,
    # Connection trouble, deadlocks and serialization failures, resources, shutdown.
    **dict.fromkeys(("08", "40", "53", "55", "57", "58"), sa.exc.OperationalError),
}
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _rowcount(status: str) -> int:
    """The row count in a command tag (`UPDATE 3`, `INSERT 0 1`); -1 when it has none."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else -1


class _PostgresConnection(Connection):
    """PostgreSQL through asyncpg, without SQLAlchemy's engine: a statement is compiled
    by SQLAlchemy (its asyncpg dialect and type processors) and run on the driver. That
    engine's pool checkout, greenlet hand-offs and execution context cost more CPU than
    the statement itself (bench/api_throughput.py; the figures are in the README)."""

    __slots__ = ("driver",)

    dialect = _POSTGRES

    def __init__(self, driver: asyncpg.Connection) -> None:
        self.driver = driver

    async def execute(self, statement: sa.Executable, parameters: Params = None) -> Result:
        """Any statement, compiled on every call (hot statements are `Prepared`)."""
        many = parameters is not None and not isinstance(parameters, Mapping)
        rows: list[Mapping[str, Any]]
        if parameters is None or isinstance(parameters, Mapping):
            rows = [parameters or {}]
        else:
            rows = list(parameters)
        compiled: Any = statement.compile(  # type: ignore[attr-defined]
            dialect=_POSTGRES, column_keys=sorted(rows[0]) if rows else None
        )
        # An IN list's values become parameters of their own, once the values are known.
        expanded = [compiled.construct_expanded_state(self._given(compiled, row)) for row in rows]
        sql = expanded[0].statement if expanded else str(compiled)
        if any(state.statement != sql for state in expanded):
            raise ValueError("many parameter sets must expand their IN lists alike")
        names = expanded[0].positiontup if expanded else compiled.positiontup
        binds = [(name, self._bind(compiled, name)) for name in names or ()]
        arguments = [
            [p(state.parameters[n]) if p is not None else state.parameters[n] for n, p in binds]
            for state in expanded
        ]
        columns, results = _result_shape(statement, _POSTGRES)
        try:
            if many:
                if columns:
                    raise ValueError("RETURNING with many parameter sets is not supported")
                await self.driver.executemany(sql, arguments)
                return Result((), (), -1)
            if isinstance(statement, sa.Select | sa.TextClause) or columns:
                records = await self.driver.fetch(sql, *arguments[0])
            else:
                status = await self.driver.execute(sql, *arguments[0])
                return Result((), (), _rowcount(status))
        except _DRIVER_ERRORS as exc:
            raise _postgres_error(exc, sql) from exc
        if not columns and records:
            columns = tuple(records[0].keys())
        if results is not None:
            values: Iterable[Sequence[Any]] = (
                [p(v) if p is not None else v for p, v in zip(results, r, strict=True)]
                for r in records
            )
        else:
            values = records
        return Result(columns, values, len(records))

    @staticmethod
    def _bind(compiled: Any, name: str) -> Processor:
        param = compiled.binds.get(name)
        if param is None:  # one value of an IN list, rendered as <name>_<n>
            param = compiled.binds[name.rpartition("_")[0]]
        return _bind_processor(param, _POSTGRES)

    @staticmethod
    def _given(compiled: Any, given: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters, with the column defaults SQLAlchemy would supply."""
        given = dict(given)
        for column in compiled.insert_prefetch:
            if column.key not in given:
                if column.default is None or not column.default.is_scalar:
                    raise ValueError(f"a default for {column} must be given or constant")
                given[column.key] = column.default.arg
        return given

    async def first(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        plan = prepared.plan(_POSTGRES, frozenset(parameters))
        try:
            values = await self.driver.fetchrow(plan.sql, *plan.parameters(parameters))
        except _DRIVER_ERRORS as exc:
            raise _postgres_error(exc, plan.sql) from exc
        return None if values is None else plan.row(values)

    async def all(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        plan = prepared.plan(_POSTGRES, frozenset(parameters))
        try:
            found = await self.driver.fetch(plan.sql, *plan.parameters(parameters))
        except _DRIVER_ERRORS as exc:
            raise _postgres_error(exc, plan.sql) from exc
        return [plan.row(values) for values in found]

    async def run(self, prepared: Prepared, parameters: Mapping[str, Any]) -> int:
        plan = prepared.plan(_POSTGRES, frozenset(parameters))
        try:
            status = await self.driver.execute(plan.sql, *plan.parameters(parameters))
        except _DRIVER_ERRORS as exc:
            raise _postgres_error(exc, plan.sql) from exc
        return _rowcount(status)


async def _setup_connection(driver: asyncpg.Connection) -> None:
    """JSON comes back decoded, as from SQLAlchemy's asyncpg engine; it goes out as the
    text SQLAlchemy's JSON bind processor made."""
    for type_name in ("json", "jsonb"):
        await driver.set_type_codec(
            type_name, encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def _keep_session(_driver: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is, without asyncpg's reset query (a
    round trip per request): Waypost sets no session state, takes only transaction-scoped
    advisory locks, and listens on connections of its own. An open transaction is still
    rolled back by asyncpg first."""


class _PostgresTransaction:
    """A pooled connection for one read (each statement in autocommit, so no BEGIN and
    COMMIT round trips) or one write transaction."""

    __slots__ = ("_database", "_driver", "_pool", "_transaction", "_write")

    def __init__(self, database: Database, *, write: bool) -> None:
        self._database = database
        self._write = write

    async def __aenter__(self) -> Connection:
        self._pool = pool = self._database._pool or await self._database._open_pool()
        try:
            self._driver = driver = await pool.acquire()
        except _DRIVER_ERRORS as exc:
            raise _postgres_error(exc, "(connect)") from exc
        if self._write:
            self._transaction = driver.transaction()
            try:
                await self._transaction.start()
            except _DRIVER_ERRORS as exc:
                await pool.release(driver)
                raise _postgres_error(exc, "BEGIN") from exc
        return _PostgresConnection(driver)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        try:
            if self._write:
                if exc_type is None:
                    try:
                        await self._transaction.commit()
                    except _DRIVER_ERRORS as exc:
                        raise _postgres_error(exc, "COMMIT") from exc
                else:
                    with contextlib.suppress(*_DRIVER_ERRORS):  # a lost connection
                        await self._transaction.rollback()
        finally:
            await self._pool.release(self._driver)


# --- SQLite ---------------------------------------------------------------------------


class _InlineConnection(Connection):
    """SQLite on the event loop itself. A local SQLite statement takes microseconds, far
    less than handing it to a thread and back, which is what an async SQLite driver does.
    Transactions therefore never await real I/O (keep network calls outside them):
    reads run on one shared connection in autocommit, and writes take turns on another
    (_SqliteWrites)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.sa = conn
        self.dialect = conn.dialect
        self.driver: sqlite3.Connection = conn.connection.dbapi_connection  # type: ignore[assignment]

    async def execute(self, statement: sa.Executable, parameters: Params = None) -> Result:
        done = self.sa.execute(statement, parameters)
        if not done.returns_rows:
            return Result((), (), done.rowcount)
        return Result(tuple(done.keys()), done.all(), done.rowcount)

    async def scalar(
        self, statement: sa.Executable, parameters: Mapping[str, Any] | None = None
    ) -> Any:
        return self.sa.scalar(statement, parameters)

    async def first(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        plan = prepared.plan(self.sa.dialect, frozenset(parameters))
        cursor = self._run(plan, parameters)
        values = cursor.fetchone()
        if plan.returning and values is not None:
            # An INSERT or UPDATE ... RETURNING read only in part stays active on the
            # connection and would hold up the savepoint's RELEASE; finish it.
            cursor.fetchall()
        return None if values is None else plan.row(values)

    async def all(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        plan = prepared.plan(self.sa.dialect, frozenset(parameters))
        return [plan.row(values) for values in self._run(plan, parameters).fetchall()]

    async def run(self, prepared: Prepared, parameters: Mapping[str, Any]) -> int:
        plan = prepared.plan(self.sa.dialect, frozenset(parameters))
        return self._run(plan, parameters).rowcount

    def _run(self, plan: _Plan, parameters: Mapping[str, Any]) -> sqlite3.Cursor:
        values = plan.parameters(parameters)
        try:
            return self.driver.execute(plan.sql, values)
        except sqlite3.Error as exc:
            raise _wrapped(exc, plan.sql, sqlite3.Error) from exc


class _Checkpointer:
    """Copies the WAL back into the database file once a second, in a thread of its own.

    A checkpoint ends in an fsync; left to SQLite it runs inside whichever commit crosses
    the threshold, stalling the event loop for milliseconds. Here it never does.
    """

    def __init__(self, path: str, interval_seconds: float = 1.0) -> None:
        self._path = path
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or locked: the next round catches up
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _SqliteConnection:
    """One connection of this process's, opened on first use and again after SQLAlchemy
    has invalidated it."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._inline: _InlineConnection | None = None

    def _connection(self) -> _InlineConnection:
        if self._inline is None or self._inline.sa.invalidated:
            self._inline = _InlineConnection(self._engine.connect())
        return self._inline

    def close(self) -> None:
        if self._inline is not None:
            self._inline.sa.close()
            self._inline = None


class _SqliteReads(_SqliteConnection):
    """Reads share one connection per process, in autocommit: each statement is its own
    implicit transaction, so there is no checkout, BEGIN or COMMIT on the hot path.
    (SQLAlchemy still counts the connection as "in a transaction"; with the driver in
    autocommit that holds nothing in SQLite, so it is only ended after an error, which
    SQLAlchemy would otherwise keep reporting on every later statement.)"""

    async def __aenter__(self) -> Connection:
        return self._connection()

    async def __aexit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is not None and self._inline is not None:
            self._inline.sa.rollback()


class _Batch:
    """Writers whose changes wait for one COMMIT."""

    def __init__(self) -> None:
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.kept = 0  # writers whose changes are in it


class _SqliteWrites(_SqliteConnection):
    """Writes take turns on one connection per process, and commit in batches.

    The turn is an asyncio lock, so a writer that ever awaited inside its transaction
    would make the next one wait its turn on the event loop, never block the loop on
    SQLite's busy timeout. Each writer runs inside a savepoint of a shared transaction,
    so a failing writer rolls back only its own changes. The COMMIT runs on the event
    loop's next turn, after the other requests that were ready have added their writes
    (or at once after MAX_BATCH of them), and each writer returns only once the COMMIT
    holding its changes is done: as durable as a transaction per request, but a busy
    process writes its pages to the WAL once per batch instead of once per request,
    which is most of what a small write costs.
    """

    MAX_BATCH = 64

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._turn = asyncio.Lock()
        self._batch: _Batch | None = None
        self._commit_scheduled = False

    async def __aenter__(self) -> Connection:
        await self._turn.acquire()
        try:
            conn = self._connection()
            if self._batch is None:
                # Take the write lock up front: a deferred transaction that upgrades
                # later fails with SQLITE_BUSY instead of waiting.
                conn.driver.execute("BEGIN IMMEDIATE")
                self._batch = _Batch()
            conn.driver.execute("SAVEPOINT writer")
        except BaseException:
            self._turn.release()
            raise
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        batch = self._batch
        assert batch is not None and self._inline is not None
        driver = self._inline.driver
        try:
            if exc_type is None:
                driver.execute("RELEASE writer")
                batch.kept += 1
            else:
                driver.execute("ROLLBACK TO writer")
                driver.execute("RELEASE writer")
        except sqlite3.Error as exc:
            # SQLite has ended the whole transaction (a full disk, say): every change
            # in the batch is gone, and every writer in it hears so.
            error = _wrapped(exc, "RELEASE writer", sqlite3.Error)
            self._end(error)
            raise error from exc
        finally:
            self._turn.release()
        if batch.kept >= self.MAX_BATCH:
            self._commit()
        elif not self._commit_scheduled:
            self._commit_scheduled = True
            asyncio.get_running_loop().call_soon(self._commit_unless_busy)
        if exc_type is None:
            # Shielded: a writer cancelled now still has its changes committed.
            await asyncio.shield(batch.committed)

    def _commit_unless_busy(self) -> None:
        self._commit_scheduled = False
        # A writer inside its savepoint now schedules the commit again when it leaves.
        if not self._turn.locked():
            self._commit()

    def _commit(self) -> None:
        if self._batch is None or self._inline is None:
            return
        try:
            self._inline.driver.execute("COMMIT")
        except sqlite3.Error as exc:
            self._end(_wrapped(exc, "COMMIT", sqlite3.Error))
        else:
            self._batch.committed.set_result(None)
            self._batch = None

    def _end(self, error: Exception) -> None:
        """The batch failed: roll back what is left and tell its writers."""
        assert self._batch is not None and self._inline is not None
        if self._inline.driver.in_transaction:
            self._inline.driver.execute("ROLLBACK")
        self._batch.committed.set_exception(error)
        self._batch.committed.exception()  # writers that failed anyway need not look
        self._batch = None

    def close(self) -> None:
        if self._batch is not None:
            self._end(RuntimeError("the database closed before this write was committed"))
        super().close()


def _wrapped(exc: Exception, sql: str, driver_error: type[Exception]) -> Exception:
    """The same exception SQLAlchemy raises (IntegrityError and so on), so that callers
    handle one kind whichever way a statement ran."""
    return sa.exc.DBAPIError.instance(sql, None, exc, driver_error)


class Database:
    """The engine plus the two ways in: a read and a write transaction."""

    def __init__(self, plain_url: str, *, pool_size: int = 20) -> None:
        url = driver_url(plain_url)
        self.dialect = url.get_backend_name()
        self._sync_engine: sa.Engine | None = None
        self._pool: asyncpg.Pool | None = None
        if self.dialect == "sqlite":
            self._sync_engine = sa.create_engine(url, pool_size=pool_size)
            _sqlite_connection_setup(self._sync_engine)
            self._sqlite_reads = _SqliteReads(self._sync_engine)
            self._sqlite_writes = _SqliteWrites(self._sync_engine)
            self._checkpointer = (
                _Checkpointer(url.database) if url.database not in (None, "", ":memory:") else None
            )
        else:
            self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._pool_size = pool_size
            self._opening = asyncio.Lock()

    async def _open_pool(self) -> asyncpg.Pool:
        """The pool, opened on first use (in the event loop that uses it).

        One pool for reads and writes, of a fixed size: a request holds a connection only
        for its statements, so a few connections serve many concurrent requests, and a
        pool that grew and shrank with the load would open a new server process per
        connection it added (the cost that dominated before). No pre-ping either: it
        would double the round trips of every request; a dropped connection fails one
        request and is then replaced."""
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._pool_size,
                        init=_setup_connection,
                        reset=_keep_session,
                        # Every statement Waypost runs, prepared once per connection.
                        statement_cache_size=500,
                        server_settings={"application_name": "waypost"},
                    )
                except _DRIVER_ERRORS as exc:
                    raise _postgres_error(exc, "(connect)") from exc
        return self._pool

    def read(self) -> AbstractAsyncContextManager[Connection]:
        if self._sync_engine is not None:
            return self._sqlite_reads
        return _PostgresTransaction(self, write=False)

    @asynccontextmanager
    async def write(self, *, transaction: bool = True) -> AsyncIterator[Connection]:
        """A write transaction. No real I/O may run inside it (`refuse_inside_write`).
        `transaction=False`: writes that need no transaction around them, each statement
        atomic on its own; PostgreSQL then spares the BEGIN and COMMIT round trips (SQLite
        writes take their turn on its one write connection all the same)."""
        marker = _in_write.set(True)
        try:
            if self._sync_engine is not None:
                async with self._sqlite_writes as conn:
                    yield conn
            else:
                async with _PostgresTransaction(self, write=transaction) as conn:
                    yield conn
        finally:
            _in_write.reset(marker)

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        if self._sync_engine is not None:
            self._sqlite_reads.close()
            self._sqlite_writes.close()
            if self._checkpointer is not None:
                self._checkpointer.stop()
            self._sync_engine.dispose()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


def _violates(exc: sa.exc.IntegrityError, sqlstate: str, sqlite_names: tuple[str, ...]) -> bool:
    """Whether a constraint error is of one kind, by the engines' codes, not their words."""
    original = exc.orig
    if isinstance(original, sqlite3.Error):
        return getattr(original, "sqlite_errorname", None) in sqlite_names
    # asyncpg's errors, and psycopg's (a synchronous engine), carry the SQLSTATE.
    return getattr(original, "sqlstate", None) == sqlstate


def is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    return _violates(exc, "23505", ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"))


def is_foreign_key_violation(exc: sa.exc.IntegrityError) -> bool:
    return _violates(exc, "23503", ("SQLITE_CONSTRAINT_FOREIGNKEY",))


def migrate(plain_url: str) -> None:
    """Brings the schema to the latest revision. Safe to run from several processes."""
    from alembic import command
    from alembic.config import Config

    url = driver_url(plain_url)
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
