"""All of the logs feature's SQL: messages, logs and attempts, and the typed rows it
returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waypost.db import Connection, Prepared, among, as_list
from waypost.kinds import EnvRole
from waypost.logs.tables import attempts, logs, messages
from waypost.organizations.service import with_environment


@dataclass(frozen=True, slots=True)
class NewLog:
    id: str
    destination_id: str
    destination_name: str
    type: str  # send | request


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a sender needs to know about one log: the message and who it is between."""

    log_id: str
    body: str
    data_model: str
    event_type: str
    source_id: str
    source_name: str
    destination_id: str
    destination_name: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Attempt:
    id: str
    attempt_at: str
    status: str  # succeeded | failed
    http_status: int | None
    error: str | None
    duration_ms: int


_insert_message = Prepared(messages.insert())
_insert_log = Prepared(logs.insert())
_insert_attempt = Prepared(attempts.insert())
_log_after_attempt = Prepared(
    logs.update()
    .where(logs.c.id == sa.bindparam("log_id"))
    .values(
        # No new status: the log was settled meanwhile (its destination deleted, say),
        # and this late attempt is only history.
        status=sa.func.coalesce(sa.bindparam("new_status", type_=sa.String), logs.c.status),
        attempts_total=logs.c.attempts_total + 1,
        latest_attempt_id=sa.bindparam("attempt_id"),
        failure_reason=sa.func.coalesce(
            sa.bindparam("reason", type_=sa.Text), logs.c.failure_reason
        ),
        response=sa.bindparam("answer"),
        file_name=sa.func.coalesce(sa.bindparam("file_name", type_=sa.String), logs.c.file_name),
        updated_at=sa.bindparam("at"),
    )
)
_delivery_columns = sa.select(
    logs.c.id.label("log_id"),
    messages.c.body,
    logs.c.data_model,
    logs.c.event_type,
    logs.c.source_id,
    logs.c.source_name,
    logs.c.destination_id,
    logs.c.destination_name,
    logs.c.created_at,
).join(messages, messages.c.id == logs.c.message_id)
_deliveries = {
    postgres: Prepared(_delivery_columns.where(among("logs.id", "ids", postgres=postgres)))
    for postgres in (False, True)
}


async def insert_message(
    conn: Connection,
    *,
    message_id: str,
    environment_id: str,
    organization_id: int,
    source_id: str,
    source_name: str,
    data_model: str,
    event_type: str,
    test: bool,
    body: str,
    new_logs: Sequence[NewLog],
    at: str,
) -> None:
    await conn.run(
        _insert_message,
        {
            "id": message_id,
            "environment_id": environment_id,
            "source_id": source_id,
            "body": body,
            "created_at": at,
        },
    )
    for log in new_logs:
        await conn.run(
            _insert_log,
            {
                "id": log.id,
                "message_id": message_id,
                "environment_id": environment_id,
                "organization_id": organization_id,
                "type": log.type,
                "status": "pending",
                "data_model": data_model,
                "event_type": event_type,
                "test": test,
                "source_id": source_id,
                "source_name": source_name,
                "destination_id": log.destination_id,
                "destination_name": log.destination_name,
                "attempts_total": 0,
                "latest_attempt_id": None,
                "failure_reason": None,
                "response": None,
                "file_name": None,
                "created_at": at,
                "updated_at": at,
            },
        )


async def deliveries(conn: Connection, log_ids: Sequence[str]) -> dict[str, Delivery]:
    postgres = conn.dialect.name == "postgresql"
    rows = await conn.all(_deliveries[postgres], {"ids": as_list(log_ids, conn)})
    return {row["log_id"]: Delivery(**row) for row in rows}


async def insert_attempt(
    conn: Connection,
    *,
    log_id: str,
    attempt: Attempt,
    new_status: str | None,
    reason: str | None,
    answer: str | None,
    file_name: str | None,
) -> None:
    await conn.run(
        _insert_attempt,
        {
            "id": attempt.id,
            "log_id": log_id,
            "attempt_at": attempt.attempt_at,
            "status": attempt.status,
            "http_status": attempt.http_status,
            "error": attempt.error,
            "duration_ms": attempt.duration_ms,
        },
    )
    await conn.run(
        _log_after_attempt,
        {
            "log_id": log_id,
            "new_status": new_status,
            "attempt_id": attempt.id,
            "reason": reason,
            "answer": answer,
            "file_name": file_name,
            "at": attempt.attempt_at,
        },
    )


async def mark_failed(conn: Connection, *, log_ids: Sequence[str], reason: str, at: str) -> int:
    if not log_ids:
        return 0
    done = await conn.execute(
        logs.update()
        .where(logs.c.id.in_(list(log_ids)), logs.c.status == "pending")
        .values(status="failed", failure_reason=reason, updated_at=at)
    )
    return done.rowcount


# --- the read side: search and one log ---------------------------------------------------

MAX_SEQ = 2**63 - 1  # the BIGINT seq on PostgreSQL

_latest = attempts.alias("latest")
# A log with its latest attempt, whose columns are labelled apart from the log's own.
_with_latest = sa.select(
    logs,
    _latest.c.attempt_at.label("latest_attempt_at"),
    _latest.c.status.label("latest_status"),
    _latest.c.http_status.label("latest_http_status"),
    _latest.c.error.label("latest_error"),
    _latest.c.duration_ms.label("latest_duration_ms"),
).outerjoin(_latest, _latest.c.id == logs.c.latest_attempt_id)
_for_caller = Prepared(
    with_environment(
        _with_latest.add_columns(messages.c.body).join(
            messages, messages.c.id == logs.c.message_id
        ),
        logs.c.environment_id,
        caller=True,
        of_caller_organization=True,
    ).where(logs.c.id == sa.bindparam("log_id"))
)
_attempts_of = Prepared(
    sa.select(
        attempts.c.id,
        attempts.c.attempt_at,
        attempts.c.status,
        attempts.c.http_status,
        attempts.c.error,
        attempts.c.duration_ms,
    )
    .where(attempts.c.log_id == sa.bindparam("log_id"))
    .order_by(attempts.c.seq)
)


@dataclass(frozen=True, slots=True)
class LogRow:
    seq: int  # newest first, for searching and cursors
    id: str
    message_id: str
    environment_id: str
    organization_id: int
    type: str  # send | request
    status: str  # pending | succeeded | failed
    data_model: str
    event_type: str
    test: bool
    source_id: str
    source_name: str
    destination_id: str
    destination_name: str
    attempts_total: int
    latest_attempt_id: str | None
    failure_reason: str | None
    response: str | None  # a synchronous query's answer, as the destination sent it
    file_name: str | None  # the blob a cloud destination got the message in
    created_at: str
    updated_at: str
    latest: Attempt | None


@dataclass(frozen=True, slots=True)
class LogForCaller:
    """A log found for a caller: its message's body, and the caller's role in the log's
    environment (None: no role, so not visible)."""

    log: LogRow
    body: str
    role: EnvRole | None


_LOG_COLUMNS = tuple(f.name for f in dataclasses.fields(LogRow) if f.name != "latest")


def _log(values: Mapping[str, Any] | sa.RowMapping) -> LogRow:
    """A row of `_with_latest`."""
    columns = {name: values[name] for name in _LOG_COLUMNS}
    # Read on the driver directly, SQLite gives a boolean column as 0 or 1.
    columns["test"] = bool(columns["test"])
    latest = None
    if values["latest_attempt_id"] is not None:
        latest = Attempt(
            id=values["latest_attempt_id"],
            attempt_at=values["latest_attempt_at"],
            status=values["latest_status"],
            http_status=values["latest_http_status"],
            error=values["latest_error"],
            duration_ms=values["latest_duration_ms"],
        )
    return LogRow(**columns, latest=latest)


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A search within one environment; None means "any". Times are stored-form text,
    inclusive bounds; `data_model_key` is the data model without spaces."""

    environment_id: str
    data_model_key: str | None = None
    event_type: str | None = None
    source_id: str | None = None
    destination_id: str | None = None
    status: str | None = None
    type: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    updated_after: str | None = None
    updated_before: str | None = None


async def search(conn: Connection, query: LogQuery, *, before: int, limit: int) -> list[LogRow]:
    """Logs newest first (by seq, below `before`), each with its latest attempt.

    The (environment, seq) index gives the order; status and destination filters have
    indexes that lead with them. The rest are checked on the rows that index walks: few
    sources share an environment's traffic, so a source filter needs no index of its own
    (one would cost every insert on the ingest path)."""
    conditions = [logs.c.environment_id == query.environment_id, logs.c.seq < before]
    for column, value in (
        (logs.c.event_type, query.event_type),
        (logs.c.source_id, query.source_id),
        (logs.c.destination_id, query.destination_id),
        (logs.c.status, query.status),
        (logs.c.type, query.type),
    ):
        if value is not None:
            conditions.append(column == value)
    if query.data_model_key is not None:
        conditions.append(sa.func.replace(logs.c.data_model, " ", "") == query.data_model_key)
    for column, low, high in (
        (logs.c.created_at, query.created_after, query.created_before),
        (logs.c.updated_at, query.updated_after, query.updated_before),
    ):
        if low is not None:
            conditions.append(column >= low)
        if high is not None:
            conditions.append(column <= high)
    statement = _with_latest.where(*conditions).order_by(logs.c.seq.desc()).limit(limit)
    return [_log(values) for values in (await conn.execute(statement)).mappings()]


async def log_for_caller(
    conn: Connection, *, log_id: str, organization_id: int, user_id: str
) -> LogForCaller | None:
    """The log with its latest attempt, its message's body and the caller's role in its
    environment. `log_id` must be canonical."""
    params = {"log_id": log_id, "organization_id": organization_id, "user_id": user_id}
    found = await conn.first(_for_caller, params)
    if found is None:
        return None
    role = None if found["role"] is None else EnvRole(found["role"])
    return LogForCaller(_log(found), found["body"], role)


async def attempts_of(conn: Connection, log_id: str) -> list[Attempt]:
    """Every attempt at a log, oldest first."""
    return [Attempt(**values) for values in await conn.all(_attempts_of, {"log_id": log_id})]
