"""All of the logs feature's SQL: messages, logs and attempts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from waypost.db import Connection, Prepared
from waypost.logs.tables import attempts, logs, messages


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
        status=sa.bindparam("new_status"),
        attempts_total=logs.c.attempts_total + 1,
        latest_attempt_id=sa.bindparam("attempt_id"),
        failure_reason=sa.bindparam("reason"),
        response=sa.bindparam("answer"),
        updated_at=sa.bindparam("at"),
    )
)
_deliveries = sa.select(
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
                "created_at": at,
                "updated_at": at,
            },
        )


async def deliveries(conn: Connection, log_ids: Sequence[str]) -> dict[str, Delivery]:
    rows = (await conn.execute(_deliveries.where(logs.c.id.in_(list(log_ids))))).all()
    return {row.log_id: Delivery(**row._mapping) for row in rows}


async def insert_attempt(
    conn: Connection,
    *,
    log_id: str,
    attempt: Attempt,
    new_status: str,
    reason: str | None,
    answer: str | None,
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
