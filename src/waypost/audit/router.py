"""HTTP for the audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from waypost.access import CurrentPrincipal
from waypost.audit import service
from waypost.audit.schemas import AuditEventOut, AuditEventsPayload
from waypost.http import Envelope, Page, envelope, error_responses
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["audit events"])


@router.get(
    "/organizations/{organizationId}/audit-events",
    response_model=Envelope[AuditEventsPayload],
    responses=error_responses(401, 403, 404, 422),
    summary="Search the audit trail (owners and admins), newest first",
)
async def audit_events(
    organization_id: Annotated[str, Path(alias="organizationId")],
    principal: CurrentPrincipal,
    request: Request,
    user_id: Annotated[str | None, Query(alias="userId", max_length=64)] = None,
    start: Annotated[str | None, Query(alias="startDateTime", max_length=64)] = None,
    stop: Annotated[str | None, Query(alias="stopDateTime", max_length=64)] = None,
    status: Annotated[service.EventStatus | None, Query()] = None,
    action_type: Annotated[list[service.ActionType] | None, Query(alias="actionType")] = None,
    page: Annotated[int, Query(alias="_page", ge=1, le=100_000)] = 1,
    count: Annotated[int, Query(alias="_count", ge=1, le=service.MAX_PAGE)] = service.MAX_PAGE,
) -> Response:
    results, more = await service.search(
        runtime(request).db,
        principal=principal,
        organization_id=organization_id,
        user_id=user_id,
        start=start,
        stop=stop,
        status=status,
        action_types=action_type or [],
        page=page,
        count=count,
    )
    links = {"self": str(request.url)}
    if page > 1:
        links["first"] = str(request.url.include_query_params(_page=1))
        links["prev"] = str(request.url.include_query_params(_page=page - 1))
    if more:
        links["next"] = str(request.url.include_query_params(_page=page + 1))
    paging = Page(current_page=page, page_type="offset", page_size=count, links=links)
    return envelope(AuditEventsPayload(results=[AuditEventOut.of(e) for e in results]), page=paging)
