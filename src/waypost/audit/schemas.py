"""Wire models for the audit trail (Redox's names on the wire)."""

from __future__ import annotations

from pydantic import JsonValue

from waypost.audit.store import EventRow
from waypost.http import ResponseModel


class AuditEventOut(ResponseModel):
    id: str
    organization_id: int
    user_id: str | None
    request_ip: str | None
    route: str | None
    created_at: str
    type: str
    status: str
    details: dict[str, JsonValue]

    @classmethod
    def of(cls, event: EventRow) -> AuditEventOut:
        return cls(
            id=event.id,
            organization_id=event.organization_id,
            user_id=event.user_id,
            request_ip=event.request_ip,
            route=event.route,
            created_at=event.created_at,
            type=event.type,
            status=event.status,
            details=event.details,
        )


class AuditEventsPayload(ResponseModel):
    results: list[AuditEventOut]
