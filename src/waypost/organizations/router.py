"""HTTP for organizations: the environments a caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from waypost.access import CurrentPrincipal
from waypost.http import Meta, envelope, error_responses
from waypost.kinds import EnvironmentFlag
from waypost.organizations import roles, service
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["environments"])

EnvironmentId = Annotated[str, Path(alias="environmentId")]
OrganizationId = Annotated[str, Path(alias="organizationId")]


class OrganizationRef(BaseModel):
    id: int


class EnvironmentOut(BaseModel):
    id: str
    name: str
    environmentFlag: EnvironmentFlag
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
    organization_id: OrganizationId,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    environments = await service.list_environments(runtime(request).db, principal, organization_id)
    return envelope({"environments": environments})


class RoleOut(BaseModel):
    id: str
    name: str


class MemberOut(BaseModel):
    id: str
    fullname: str
    lowercaseEmail: str


class NamedRef(BaseModel):
    id: int | str
    name: str


class OrganizationMembership(BaseModel):
    organization: NamedRef
    role: RoleOut
    user: MemberOut


class EnvironmentMembership(BaseModel):
    environment: NamedRef
    role: RoleOut
    user: MemberOut


class OrganizationMembershipsEnvelope(BaseModel):
    meta: Meta
    payload: dict[str, list[OrganizationMembership]]


class EnvironmentMembershipsEnvelope(BaseModel):
    meta: Meta
    payload: dict[str, list[EnvironmentMembership]]


class SuccessPayload(BaseModel):
    success: bool


class SuccessEnvelope(BaseModel):
    meta: Meta
    payload: SuccessPayload


WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422)


def _success() -> Response:
    return envelope({"success": True})


@router.get(
    "/organizations/{organizationId}/role-assignment",
    response_model=OrganizationMembershipsEnvelope,
    responses=error_responses(401, 403, 404),
    tags=["role assignments"],
    summary="List the organization's members and their organization roles",
)
async def organization_memberships(
    organization_id: OrganizationId, principal: CurrentPrincipal, request: Request
) -> Response:
    members = await roles.organization_memberships(runtime(request).db, principal, organization_id)
    return envelope({"memberships": members})


@router.put(
    "/organizations/{organizationId}/role-assignment",
    response_model=SuccessEnvelope,
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Change a member's organization role (owners only)",
)
async def set_organization_role(
    organization_id: OrganizationId,
    body: roles.OrgRoleAssignment,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.set_organization_role(runtime(request).db, principal, organization_id, body)
    return _success()


@router.get(
    "/environments/{environmentId}/role-assignment",
    response_model=EnvironmentMembershipsEnvelope,
    responses=error_responses(401, 403, 404),
    tags=["role assignments"],
    summary="List the environment's members and their roles",
)
async def environment_memberships(
    environment_id: EnvironmentId, principal: CurrentPrincipal, request: Request
) -> Response:
    members = await roles.environment_memberships(runtime(request).db, principal, environment_id)
    return envelope({"memberships": members})


@router.post(
    "/environments/{environmentId}/role-assignment",
    response_model=SuccessEnvelope,
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Give a member a role in the environment (one role per environment)",
)
async def assign_environment_role(
    environment_id: EnvironmentId,
    body: roles.EnvRoleAssignment,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.change_environment_role(
        runtime(request).db, principal, environment_id, body.user, body.role, mode="assign"
    )
    return _success()


@router.put(
    "/environments/{environmentId}/role-assignment",
    response_model=SuccessEnvelope,
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Change a member's role in the environment",
)
async def change_environment_role(
    environment_id: EnvironmentId,
    body: roles.EnvRoleAssignment,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.change_environment_role(
        runtime(request).db, principal, environment_id, body.user, body.role, mode="change"
    )
    return _success()


@router.delete(
    "/environments/{environmentId}/role-assignment",
    response_model=SuccessEnvelope,
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Remove a member's role in the environment (they stay in the organization)",
)
async def remove_environment_role(
    environment_id: EnvironmentId,
    body: roles.EnvRoleRemoval,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.change_environment_role(
        runtime(request).db, principal, environment_id, body.user, None, mode="remove"
    )
    return _success()
