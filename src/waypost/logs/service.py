"""Logs: one per message and destination, with every attempt (Redox's log model).

The write side is called by ingest (a message and its logs, in the ingest transaction)
and by delivery (each attempt, in the same transaction as the outbox's ack or retry).
The read side answers Redox's log API: search, and one log with its attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from waypost.access import Action, Principal, require_environment_role
from waypost.db import Connection, canonical_id
from waypost.http import decode_cursor, encode_cursor
from waypost.kinds import EnvRole
from waypost.logs import store
from waypost.logs.schemas import (
    AttemptOut,
    AttemptsOut,
    AttemptsWithAllOut,
    LogDetailOut,
    LogOut,
    LogParty,
    LogSearch,
)
from waypost.logs.store import Attempt, Delivery, LogRow, NewLog
from waypost.organizations.service import environment_access
from waypost.runtime import Runtime

__all__ = [
    "Attempt",
    "Delivery",
    "NewLog",
    "as_delivered",
    "delivered_body",
    "deliveries",
    "fail",
    "get",
    "record_attempt",
    "record_message",
    "search",
]


async def record_message(
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
    """The message as accepted and one pending log per destination."""
    await store.insert_message(
        conn,
        message_id=message_id,
        environment_id=environment_id,
        organization_id=organization_id,
        source_id=source_id,
        source_name=source_name,
        data_model=data_model,
        event_type=event_type,
        test=test,
        body=body,
        new_logs=new_logs,
        at=at,
    )


async def deliveries(conn: Connection, log_ids: Sequence[str]) -> dict[str, Delivery]:
    """The messages behind these logs, by log id (logs that no longer exist are absent)."""
    return await store.deliveries(conn, log_ids)


async def record_attempt(
    conn: Connection,
    *,
    log_id: str,
    attempt: Attempt,
    status: str | None,
    reason: str | None = None,
    answer: str | None = None,
    file_name: str | None = None,
) -> None:
    """One attempt, and the log's status after it: `pending` while it will be retried,
    `succeeded`, or `failed` with the reason it will not be; None leaves the status as
    it is (the log was settled while this attempt was under way). `file_name`: the blob
    a cloud destination's attempt wrote to."""
    await store.insert_attempt(
        conn,
        log_id=log_id,
        attempt=attempt,
        new_status=status,
        reason=reason,
        answer=answer,
        file_name=file_name,
    )


async def fail(conn: Connection, *, log_ids: Sequence[str], reason: str, at: str) -> int:
    """Marks pending logs failed without an attempt (the destination was deleted, say)."""
    return await store.mark_failed(conn, log_ids=log_ids, reason=reason, at=at)


# --- the read side: Redox's log API -------------------------------------------------------

MAX_PAGE = 50  # Redox: "The maximum value per page is 50"
_WHAT = "log"
# The payload may hold PHI: only these roles see it (Redox: payloads are for support and
# engineers); viewers get the metadata.
_PAYLOAD_ROLES = frozenset({EnvRole.ENGINEER, EnvRole.SUPPORT})


def as_delivered(delivery: Delivery, attempt_id: str | None) -> dict[str, Any]:
    """The message as the destination receives it: the body as accepted, with
    `Meta.Source`, `Meta.Destinations` (this destination) and `Meta.Logs` (this log and
    attempt) filled in."""
    message: dict[str, Any] = orjson.loads(delivery.body)
    meta = dict(message.get("Meta") or {})
    meta["Source"] = {"ID": delivery.source_id, "Name": delivery.source_name}
    meta["Destinations"] = [{"ID": delivery.destination_id, "Name": delivery.destination_name}]
    meta["Logs"] = [{"ID": delivery.log_id, "AttemptID": attempt_id}]
    message["Meta"] = meta
    return message


def delivered_body(delivery: Delivery, attempt_id: str | None) -> bytes:
    """`as_delivered`, serialized: what a sender POSTs."""
    return orjson.dumps(as_delivered(delivery, attempt_id))


def _attempt(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        id=attempt.id,
        attempt_at=attempt.attempt_at,
        status=attempt.status,
        http_status=attempt.http_status,
        error=attempt.error,
        duration_ms=attempt.duration_ms,
    )


def _latest(log: LogRow) -> AttemptOut | None:
    return None if log.latest is None else _attempt(log.latest)


def _fields(log: LogRow) -> dict[str, Any]:
    """The metadata every log view shows, as the wire model's keyword arguments."""
    return {
        "id": log.id,
        "type": log.type,
        "status": log.status,
        "data_model": log.data_model,
        "event_type": log.event_type,
        "test": log.test,
        "source": LogParty(id=log.source_id, name=log.source_name),
        "destination": LogParty(id=log.destination_id, name=log.destination_name),
        "created_at": log.created_at,
        "updated_at": log.updated_at,
        "failure_reason": log.failure_reason if log.status == "failed" else None,
        "file_name": log.file_name,
    }


def _id_filter(given: str | None) -> str | None:
    """An id filter's stored form; an id that is not a uuid names no log, and never
    reaches a query (PostgreSQL refuses some text, NUL for one)."""
    if given is None:
        return None
    return canonical_id(given) or ""


async def search(
    rt: Runtime,
    principal: Principal,
    environment_id: str,
    filters: LogSearch,
    *,
    count: int,
    cursor: str | None,
) -> tuple[list[LogOut], str | None]:
    """One page of the environment's logs, newest first, and the next page's cursor."""
    before = decode_cursor(cursor, highest=store.MAX_SEQ) if cursor is not None else store.MAX_SEQ
    async with rt.db.read() as conn:
        environment = await environment_access(
            conn, principal, environment_id, Action.READ, what=_WHAT
        )
        if filters.data_mode == "backfill":
            return [], None  # Waypost has no backfill traffic
        query = store.LogQuery(
            environment_id=environment.id,
            data_model_key=filters.data_model.replace(" ", "")
            if filters.data_model is not None
            else None,
            event_type=filters.event_type,
            source_id=_id_filter(filters.source_id),
            destination_id=_id_filter(filters.destination_id),
            status=filters.status,
            type=filters.type,
            created_after=filters.created_after,
            created_before=filters.created_before,
            updated_after=filters.updated_after,
            updated_before=filters.updated_before,
        )
        rows = await store.search(conn, query, before=before, limit=count + 1)
    page = [
        LogOut(**_fields(log), attempts=AttemptsOut(total=log.attempts_total, latest=_latest(log)))
        for log in rows[:count]
    ]
    next_cursor = encode_cursor(rows[count - 1].seq) if len(rows) > count else None
    return page, next_cursor


def _answer(stored: str | None) -> Any:
    """A synchronous query's answer as JSON; kept as text if the destination sent other."""
    if stored is None:
        return None
    try:
        return orjson.loads(stored)
    except orjson.JSONDecodeError:
        return stored


async def get(rt: Runtime, principal: Principal, organization_id: str, log_id: str) -> LogDetailOut:
    """The log with every attempt; its payload (and a request log's answer) only for the
    engineer and support roles of its environment."""
    key = canonical_id(log_id)
    found = None
    async with rt.db.read() as conn:
        if key is not None and organization_id == str(principal.organization_id):
            found = await store.log_for_caller(
                conn,
                log_id=key,
                organization_id=principal.organization_id,
                user_id=principal.user_id,
            )
        require_environment_role(found.role if found else None, Action.READ, what=_WHAT)
        assert found is not None
        log = found.log
        every = await store.attempts_of(conn, log.id)
    shown = found.role in _PAYLOAD_ROLES
    payload = None
    if shown:
        delivery = Delivery(
            log_id=log.id,
            body=found.body,
            data_model=log.data_model,
            event_type=log.event_type,
            source_id=log.source_id,
            source_name=log.source_name,
            destination_id=log.destination_id,
            destination_name=log.destination_name,
            created_at=log.created_at,
        )
        payload = as_delivered(delivery, log.latest_attempt_id)
    return LogDetailOut(
        **_fields(log),
        attempts=AttemptsWithAllOut(
            total=log.attempts_total,
            latest=_latest(log),
            all=[_attempt(a) for a in every],
        ),
        payload=payload,
        response=_answer(log.response) if shown and log.type == "request" else None,
    )
