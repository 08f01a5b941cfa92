"""HTTP for organizations: the environments a caller may see, and role assignments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from waypost.access import CurrentPrincipal
from waypost.http import Envelope, SuccessPayload, envelope, error_responses
from waypost.kinds import EnvRole, OrgRole
from waypost.organizations import roles, service
from waypost.organizations.schemas import (
    Environment,
    EnvironmentMembership,
    EnvironmentMembershipsPayload,
    EnvironmentsPayload,
    EnvRoleAssignment,
    EnvRoleRemoval,
    MemberOut,
    NamedRef,
    OrganizationMembership,
    OrganizationMembershipsPayload,
    OrgRoleAssignment,
    RoleOut,
)
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["environments"])

EnvironmentId = Annotated[str, Path(alias="environmentId")]
OrganizationId = Annotated[str, Path(alias="organizationId")]


@router.get(
    "/organizations/{organizationId}/environments",
    response_model=Envelope[EnvironmentsPayload],
    responses=error_responses(401, 404),
    summary="List the environments where you hold a role",
)
async def list_environments(
    organization_id: OrganizationId,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    found = await service.list_environments(
        runtime(request).db, principal=principal, organization_id=organization_id
    )
    return envelope(EnvironmentsPayload(environments=[Environment.of(e) for e in found]))


WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422)


def _success() -> Response:
    return envelope(SuccessPayload(success=True))


@router.get(
    "/organizations/{organizationId}/role-assignment",
    response_model=Envelope[OrganizationMembershipsPayload],
    responses=error_responses(401, 403, 404),
    tags=["role assignments"],
    summary="List the organization's members and their organization roles",
)
async def organization_memberships(
    organization_id: OrganizationId, principal: CurrentPrincipal, request: Request
) -> Response:
    found = await roles.organization_memberships(
        runtime(request).db, principal=principal, organization_id=organization_id
    )
    memberships = [
        OrganizationMembership(
            organization=NamedRef(id=m.organization_id, name=m.organization_name),
            role=RoleOut.of(OrgRole(m.user.org_role)),
            user=MemberOut.of(m.user),
        )
        for m in found
    ]
    return envelope(OrganizationMembershipsPayload(memberships=memberships))


@router.put(
    "/organizations/{organizationId}/role-assignment",
    response_model=Envelope[SuccessPayload],
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Change a member's organization role (owners only)",
)
async def set_organization_role(
    organization_id: OrganizationId,
    body: OrgRoleAssignment,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.set_organization_role(
        runtime(request).db, principal=principal, organization_id=organization_id, body=body
    )
    return _success()


@router.get(
    "/environments/{environmentId}/role-assignment",
    response_model=Envelope[EnvironmentMembershipsPayload],
    responses=error_responses(401, 403, 404),
    tags=["role assignments"],
    summary="List the environment's members and their roles",
)
async def environment_memberships(
    environment_id: EnvironmentId, principal: CurrentPrincipal, request: Request
) -> Response:
    found = await roles.environment_memberships(
        runtime(request).db, principal=principal, environment_id=environment_id
    )
    memberships = [
        EnvironmentMembership(
            environment=NamedRef(id=m.environment.id, name=m.environment.name),
            role=RoleOut.of(EnvRole(m.role)),
            user=MemberOut.of(m.user),
        )
        for m in found
    ]
    return envelope(EnvironmentMembershipsPayload(memberships=memberships))


@router.post(
    "/environments/{environmentId}/role-assignment",
    response_model=Envelope[SuccessPayload],
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Give a member a role in the environment (one role per environment)",
)
async def assign_environment_role(
    environment_id: EnvironmentId,
    body: EnvRoleAssignment,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.change_environment_role(
        runtime(request).db,
        principal=principal,
        environment_id=environment_id,
        user_ref=body.user,
        role_ref_given=body.role,
        mode="assign",
    )
    return _success()


@router.put(
    "/environments/{environmentId}/role-assignment",
    response_model=Envelope[SuccessPayload],
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Change a member's role in the environment",
)
async def change_environment_role(
    environment_id: EnvironmentId,
    body: EnvRoleAssignment,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.change_environment_role(
        runtime(request).db,
        principal=principal,
        environment_id=environment_id,
        user_ref=body.user,
        role_ref_given=body.role,
        mode="change",
    )
    return _success()


@router.delete(
    "/environments/{environmentId}/role-assignment",
    response_model=Envelope[SuccessPayload],
    responses=WRITE_ERRORS,
    tags=["role assignments"],
    summary="Remove a member's role in the environment (they stay in the organization)",
)
async def remove_environment_role(
    environment_id: EnvironmentId,
    body: EnvRoleRemoval,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    await roles.change_environment_role(
        runtime(request).db,
        principal=principal,
        environment_id=environment_id,
        user_ref=body.user,
        role_ref_given=None,
        mode="remove",
    )
    return _success()
