"""HTTP for organizations: the environments a caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from waypost.auth.principals import CurrentPrincipal
from waypost.http import Meta, envelope, error_responses
from waypost.organizations import service
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["environments"])


class OrganizationRef(BaseModel):
    id: int


class EnvironmentOut(BaseModel):
    id: str
    name: str
    environmentFlag: service.EnvironmentFlag
    organization: OrganizationRef


class EnvironmentsPayload(BaseModel):
    environments: list[EnvironmentOut]


class EnvironmentsEnvelope(BaseModel):
    meta: Meta
    payload: EnvironmentsPayload


@router.get(
    "/organizations/{organizationId}/environments",
    response_model=EnvironmentsEnvelope,
    responses=error_responses(401, 404),
    summary="List the environments where you hold a role",
)
async def list_environments(
    organization_id: Annotated[str, Path(alias="organizationId")],
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    environments = await service.list_environments(runtime(request).db, principal, organization_id)
    return envelope({"environments": environments})
