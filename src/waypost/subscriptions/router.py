"""HTTP for subscriptions: parse, call one service function, wrap in the envelope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator

from waypost.access import CurrentPrincipal
from waypost.fields import storable
from waypost.http import Envelope, MessagePayload, envelope, error_responses
from waypost.runtime import runtime
from waypost.subscriptions import service
from waypost.subscriptions.schemas import (
    SubscriptionCreate,
    SubscriptionPayload,
    SubscriptionsPayload,
)

router = APIRouter(prefix="/platform", tags=["subscriptions"])


def _storable(value: str | None) -> str | None:
    return None if value is None else storable(value)


EnvironmentId = Annotated[str, Path(alias="environmentId")]
OrganizationId = Annotated[str, Path(alias="organizationId")]
SubscriptionId = Annotated[str, Path(alias="subscriptionId")]


@router.post(
    "/v1/environments/{environmentId}/subscriptions",
    status_code=201,
    response_model=Envelope[SubscriptionPayload],
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
    summary="Subscribe a destination to a source's messages of one data model",
    description="Source and destination must belong to the environment. `dataModel` is "
    "matched without spaces when routing (`Clinical Summary` is `ClinicalSummary`).",
)
async def create_subscription(
    environment_id: EnvironmentId,
    body: SubscriptionCreate,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    created = await service.create(runtime(request), principal, environment_id, body)
    return envelope(SubscriptionPayload(subscription=created), status=201)


@router.get(
    "/v1/environments/{environmentId}/subscriptions",
    response_model=Envelope[SubscriptionsPayload],
    responses=error_responses(401, 404, 422),
    summary="List an environment's subscriptions, in creation order",
)
async def list_subscriptions(
    environment_id: EnvironmentId,
    principal: CurrentPrincipal,
    request: Request,
    source_id: Annotated[str | None, Query(alias="sourceId", max_length=255)] = None,
    destination_id: Annotated[str | None, Query(alias="destinationId", max_length=255)] = None,
    data_model: Annotated[
        str | None, Query(alias="dataModel", max_length=255), AfterValidator(_storable)
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=service.MAX_PAGE)] = service.MAX_PAGE,
    cursor: Annotated[str | None, Query(alias="_cursor", max_length=64)] = None,
) -> Response:
    page, next_cursor = await service.list_in_environment(
        runtime(request),
        principal,
        environment_id,
        source_id=source_id,
        destination_id=destination_id,
        data_model=data_model,
        count=count,
        cursor=cursor,
    )
    links = None
    if next_cursor is not None:
        links = {"next": str(request.url.include_query_params(_cursor=next_cursor))}
    return envelope(SubscriptionsPayload(subscriptions=page), links=links)


@router.get(
    "/v1/organizations/{organizationId}/subscriptions",
    response_model=Envelope[SubscriptionsPayload],
    responses=error_responses(401, 404),
    summary="List the subscriptions of every environment where you hold a role",
)
@router.get(
    "/v0/organizations/{organizationId}/subscriptions",
    response_model=Envelope[SubscriptionsPayload],
    responses=error_responses(401, 404),
    summary="List the subscriptions of every environment where you hold a role (older path)",
    description="The same answer as the v1 path; clients in the wild still call this one.",
)
async def list_organization_subscriptions(
    organization_id: OrganizationId,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    shown = await service.list_in_organization(runtime(request), principal, organization_id)
    return envelope(SubscriptionsPayload(subscriptions=shown))


@router.get(
    "/v1/subscriptions/{subscriptionId}",
    response_model=Envelope[SubscriptionPayload],
    responses=error_responses(401, 404),
    summary="Get a subscription",
)
async def get_subscription(
    subscription_id: SubscriptionId, principal: CurrentPrincipal, request: Request
) -> Response:
    found = await service.get(runtime(request), principal, subscription_id)
    return envelope(SubscriptionPayload(subscription=found))


@router.delete(
    "/v1/subscriptions/{subscriptionId}",
    response_model=Envelope[MessagePayload],
    responses=error_responses(401, 403, 404),
    summary="Delete a subscription (messages already accepted are still delivered)",
)
async def delete_subscription(
    subscription_id: SubscriptionId, principal: CurrentPrincipal, request: Request
) -> Response:
    message = await service.delete(runtime(request), principal, subscription_id)
    return envelope(MessagePayload(message=message))
