"""HTTP for destinations: parse, call one service function, wrap in the envelope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from waypost.access import CurrentCaller, CurrentPrincipal
from waypost.destinations import service
from waypost.destinations.schemas import (
    DestinationCreate,
    DestinationPayload,
    DestinationsPayload,
    DestinationUpdate,
    VerifyRequest,
)
from waypost.http import Envelope, MessagePayload, envelope, error_responses
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["destinations"])

# Redox's path parameter names, snake_case inside.
EnvironmentId = Annotated[str, Path(alias="environmentId")]
DestinationId = Annotated[str, Path(alias="destinationId")]


@router.post(
    "/environments/{environmentId}/destinations",
    status_code=201,
    response_model=Envelope[DestinationPayload],
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
    summary="Create a destination",
)
async def create_destination(
    environment_id: EnvironmentId,
    body: DestinationCreate,
    caller: CurrentCaller,
    request: Request,
) -> Response:
    destination = await service.create(
        runtime(request), caller=caller, environment_id=environment_id, body=body
    )
    return envelope(DestinationPayload(destination=destination), status=201)


@router.get(
    "/environments/{environmentId}/destinations",
    response_model=Envelope[DestinationsPayload],
    responses=error_responses(401, 404, 422),
    summary="List destinations, in creation order",
)
async def list_destinations(
    environment_id: EnvironmentId,
    principal: CurrentPrincipal,
    request: Request,
    count: Annotated[int, Query(alias="_count", ge=1, le=service.MAX_PAGE)] = service.MAX_PAGE,
    cursor: Annotated[str | None, Query(alias="_cursor")] = None,
) -> Response:
    page, next_cursor = await service.list_page(
        runtime(request),
        principal=principal,
        environment_id=environment_id,
        count=count,
        cursor=cursor,
    )
    links = None
    if next_cursor is not None:
        links = {"next": str(request.url.include_query_params(_cursor=next_cursor))}
    return envelope(DestinationsPayload(destinations=page), links=links)


@router.get(
    "/destinations/{destinationId}",
    response_model=Envelope[DestinationPayload],
    responses=error_responses(401, 404),
    summary="Get a destination",
)
async def get_destination(
    destination_id: DestinationId,
    caller: CurrentCaller,
    request: Request,
) -> Response:
    destination = await service.get(runtime(request), caller=caller, destination_id=destination_id)
    return envelope(DestinationPayload(destination=destination))


@router.patch(
    "/destinations/{destinationId}",
    response_model=Envelope[DestinationPayload],
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Update a destination (partial)",
)
async def update_destination(
    destination_id: DestinationId,
    body: DestinationUpdate,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    destination = await service.update(
        runtime(request), principal=principal, destination_id=destination_id, body=body
    )
    return envelope(DestinationPayload(destination=destination))


@router.delete(
    "/destinations/{destinationId}",
    response_model=Envelope[MessagePayload],
    responses=error_responses(401, 403, 404, 409),
    summary="Delete a destination (cannot be undone)",
    description="Answers 409 with the count while messages are still queued for it, "
    "unless `force=true`, which marks them failed with reason `destination deleted`.",
)
async def delete_destination(
    destination_id: DestinationId,
    principal: CurrentPrincipal,
    request: Request,
    force: Annotated[
        bool, Query(description="Delete even with queued messages; they are marked failed.")
    ] = False,
) -> Response:
    message = await service.delete(
        runtime(request), principal=principal, destination_id=destination_id, force=force
    )
    return envelope(MessagePayload(message=message))


@router.post(
    "/destinations/{destinationId}/verify",
    response_model=Envelope[DestinationPayload],
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
    summary="Verify a destination with Redox's challenge handshake",
    description="Saves the given fields, then sends the challenge. On failure the answer is "
    "422 and `detail` says what went wrong; the destination keeps `verified: false`.",
)
async def verify_destination(
    destination_id: DestinationId,
    principal: CurrentPrincipal,
    request: Request,
    body: VerifyRequest | None = None,
) -> Response:
    destination = await service.verify(
        runtime(request),
        principal=principal,
        destination_id=destination_id,
        body=body or VerifyRequest(),
    )
    return envelope(DestinationPayload(destination=destination))
