"""HTTP for Redox's log API: parse, call one service function, wrap in the envelope."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from waypost.access import CurrentPrincipal
from waypost.http import Envelope, envelope, error_responses
from waypost.logs import service
from waypost.logs.schemas import LogPayload, LogSearch, LogsPayload
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["logs"])

EnvironmentId = Annotated[str, Path(alias="environmentId")]
OrganizationId = Annotated[str, Path(alias="organizationId")]
LogId = Annotated[str, Path(alias="logId")]


@router.post(
    "/environments/{environmentId}/logs/search/metadata",
    response_model=Envelope[LogsPayload],
    responses=error_responses(400, 401, 404, 413, 422),
    summary="Search the environment's logs by metadata, newest first",
    description="Every filter is optional; they combine with AND. `_count` (at most 50) and "
    "`_cursor` page; `meta.links.next` (POST the same body to it) is there when another "
    "page exists. Any role in the environment may search.",
)
async def search_logs(
    environment_id: EnvironmentId,
    principal: CurrentPrincipal,
    request: Request,
    body: LogSearch | None = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=service.MAX_PAGE)] = service.MAX_PAGE,
    cursor: Annotated[str | None, Query(alias="_cursor", max_length=64)] = None,
) -> Response:
    page, next_cursor = await service.search(
        runtime(request),
        principal,
        environment_id,
        body or LogSearch(),
        count=count,
        cursor=cursor,
    )
    links = None
    if next_cursor is not None:
        links = {"next": str(request.url.include_query_params(_cursor=next_cursor))}
    return envelope(LogsPayload(logs=page), links=links)


@router.get(
    "/organizations/{organizationId}/logs/{logId}",
    response_model=Envelope[LogPayload],
    responses=error_responses(401, 404, 422),
    summary="Get one log with every attempt",
    description="Answers Redox's current shape, the log under `payload.result`. The engineer "
    "and support roles also see `payload` (the message as delivered) and, for a `request` "
    "log, `response`; viewers see the metadata.",
)
async def get_log(
    organization_id: OrganizationId,
    log_id: LogId,
    principal: CurrentPrincipal,
    request: Request,
    data_mode: Annotated[
        Literal["realtime", "backfill"] | None,
        Query(alias="dataMode", description="Accepted for Redox compatibility and ignored."),
    ] = None,
) -> Response:
    found = await service.get(runtime(request), principal, organization_id, log_id)
    return envelope(LogPayload(result=found))
