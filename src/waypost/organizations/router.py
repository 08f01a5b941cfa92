"""HTTP for organizations: the environments a caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel

from waypost.auth.principals import CurrentPrincipal, Db
from waypost.http import Meta, envelope, error_responses
from waypost.organizations import service

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
    db: Db,
) -> Response:
    environments = await service.list_environments(db, principal, organization_id)
    return envelope({"environments": environments})
