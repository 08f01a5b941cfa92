"""Logs: one per message and destination, with every attempt (Redox's log model).

The write side is called by ingest (a message and its logs, in the ingest transaction)
and by delivery (each attempt, in the same transaction as the outbox's ack or retry).
"""

from __future__ import annotations

from collections.abc import Sequence

from waypost.db import Connection
from waypost.logs import store
from waypost.logs.store import Attempt, Delivery, NewLog

__all__ = [
    "Attempt",
    "Delivery",
    "NewLog",
    "deliveries",
    "fail",
    "record_attempt",
    "record_message",
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
    status: str,
    reason: str | None = None,
    answer: str | None = None,
) -> None:
    """One attempt, and the log's status after it: `pending` while it will be retried,
    `succeeded`, or `failed` with the reason it will not be."""
    await store.insert_attempt(
        conn, log_id=log_id, attempt=attempt, new_status=status, reason=reason, answer=answer
    )


async def fail(conn: Connection, *, log_ids: Sequence[str], reason: str, at: str) -> int:
    """Marks pending logs failed without an attempt (the destination was deleted, say)."""
    return await store.mark_failed(conn, log_ids=log_ids, reason=reason, at=at)
