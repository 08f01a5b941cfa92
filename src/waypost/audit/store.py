"""Every statement on audit events, answering typed rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import JsonValue

from waypost.audit.tables import audit_events
from waypost.db import Connection, Prepared

_insert = Prepared(audit_events.insert())


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    organization_id: int
    user_id: str | None
    request_ip: str | None
    route: str | None
    created_at: str
    type: str
    status: str
    details: dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What a search keeps; None (or no action types) keeps everything."""

    organization_id: int
    user_id: str | None = None
    start: str | None = None  # stored form, inclusive
    stop: str | None = None  # stored form, inclusive
    status: str | None = None
    action_types: Sequence[str] = ()


async def insert(conn: Connection, event: EventRow) -> None:
    await conn.run(
        _insert,
        {
            "id": event.id,
            "organization_id": event.organization_id,
            "user_id": event.user_id,
            "request_ip": event.request_ip,
            "route": event.route,
            "created_at": event.created_at,
            "type": event.type,
            "status": event.status,
            "details": event.details,
        },
    )


async def search(conn: Connection, kept: EventFilter, *, offset: int, limit: int) -> list[EventRow]:
    """Newest first."""
    query = sa.select(audit_events).where(audit_events.c.organization_id == kept.organization_id)
    if kept.user_id is not None:
        query = query.where(audit_events.c.user_id == kept.user_id)
    if kept.start is not None:
        query = query.where(audit_events.c.created_at >= kept.start)
    if kept.stop is not None:
        query = query.where(audit_events.c.created_at <= kept.stop)
    if kept.status is not None:
        query = query.where(audit_events.c.status == kept.status)
    if kept.action_types:
        query = query.where(audit_events.c.type.in_(list(kept.action_types)))
    query = query.order_by(audit_events.c.seq.desc()).offset(offset).limit(limit)
    return [
        EventRow(
            r.id,
            r.organization_id,
            r.user_id,
            r.request_ip,
            r.route,
            r.created_at,
            r.type,
            r.status,
            r.details,
        )
        for r in (await conn.execute(query)).all()
    ]
