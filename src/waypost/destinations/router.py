"""HTTP for destinations: parse, call one service function, wrap in the envelope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from waypost.auth.principals import CurrentPrincipal
from waypost.destinations import service
from waypost.destinations.schemas import (
    DestinationCreate,
    DestinationEnvelope,
    DestinationsEnvelope,
    DestinationUpdate,
    MessageEnvelope,
    VerifyRequest,
)
from waypost.http import envelope, error_responses
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["destinations"])

# Redox's path parameter names, snake_case inside.
EnvironmentId = Annotated[str, Path(alias="environmentId")]
DestinationId = Annotated[str, Path(alias="destinationId")]


@router.post(
    "/environments/{environmentId}/destinations",
    status_code=201,
    response_model=DestinationEnvelope,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
    summary="Create a destination",
)
async def create_destination(
    environment_id: EnvironmentId,
    body: DestinationCreate,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    destination = await service.create(runtime(request), principal, environment_id, body)
    return envelope({"destination": destination}, status=201)


@router.get(
    "/environments/{environmentId}/destinations",
    response_model=DestinationsEnvelope,
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
        runtime(request), principal, environment_id, count, cursor
    )
    links = None
    if next_cursor is not None:
        links = {"next": str(request.url.include_query_params(_cursor=next_cursor))}
    return envelope({"destinations": page}, links=links)


@router.get(
    "/destinations/{destinationId}",
    response_model=DestinationEnvelope,
    responses=error_responses(401, 404),
    summary="Get a destination",
)
async def get_destination(
    destination_id: DestinationId,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    return envelope({"destination": await service.get(runtime(request), principal, destination_id)})


@router.patch(
    "/destinations/{destinationId}",
    response_model=DestinationEnvelope,
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Update a destination (partial)",
)
async def update_destination(
    destination_id: DestinationId,
    body: DestinationUpdate,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    destination = await service.update(runtime(request), principal, destination_id, body)
    return envelope({"destination": destination})


@router.delete(
    "/destinations/{destinationId}",
    response_model=MessageEnvelope,
    responses=error_responses(401, 403, 404),
    summary="Delete a destination (cannot be undone)",
)
async def delete_destination(
    destination_id: DestinationId,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    return envelope({"message": await service.delete(runtime(request), principal, destination_id)})


@router.post(
    "/destinations/{destinationId}/verify",
    response_model=DestinationEnvelope,
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
        runtime(request), principal, destination_id, body or VerifyRequest()
    )
    return envelope({"destination": destination})
