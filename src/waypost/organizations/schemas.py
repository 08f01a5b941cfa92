"""Wire models for environments and role assignments (Redox's names on the wire)."""

from __future__ import annotations

import uuid
from uuid import UUID

from pydantic import model_validator

from waypost.http import ResponseModel, WireModel
from waypost.kinds import EnvironmentFlag, EnvRole, OrgRole
from waypost.organizations.store import EnvironmentRow, UserRow

# Stable role ids (Redox's `role.id`), the same on every installation.
_ROLE_NAMESPACE = uuid.UUID("6f1c3a52-8f0e-4d0b-9a55-3f1f4e2b7c10")


def role_id(role: OrgRole | EnvRole) -> str:
    kind = "organization" if isinstance(role, OrgRole) else "environment"
    return str(uuid.uuid5(_ROLE_NAMESPACE, f"{kind}:{role.value}"))


class RoleRef(WireModel):
    """A role named by `name`, by `id`, or by both (then they must agree)."""

    id: UUID | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _named(self) -> RoleRef:
        if self.id is None and self.name is None:
            raise ValueError("give the role's name or id")
        return self


class UserRef(WireModel):
    id: str
    name: str | None = None  # Redox's examples carry it; the id decides


class OrgRoleAssignment(WireModel):
    role: RoleRef
    user: UserRef


class EnvRoleAssignment(WireModel):
    role: RoleRef
    user: UserRef


class EnvRoleRemoval(WireModel):
    user: UserRef


class OrganizationRef(ResponseModel):
    id: int


class Environment(ResponseModel):
    id: str
    name: str
    environment_flag: EnvironmentFlag
    organization: OrganizationRef

    @classmethod
    def of(cls, env: EnvironmentRow) -> Environment:
        return cls(
            id=env.id,
            name=env.name,
            environment_flag=env.flag,
            organization=OrganizationRef(id=env.organization_id),
        )


class EnvironmentsPayload(ResponseModel):
    environments: list[Environment]


class RoleOut(ResponseModel):
    id: str
    name: str

    @classmethod
    def of(cls, role: OrgRole | EnvRole) -> RoleOut:
        return cls(id=role_id(role), name=role.value)


class MemberOut(ResponseModel):
    id: str
    fullname: str
    lowercase_email: str

    @classmethod
    def of(cls, user: UserRow) -> MemberOut:
        return cls(id=user.id, fullname=user.fullname, lowercase_email=user.email)


class NamedRef(ResponseModel):
    id: int | str
    name: str


class OrganizationMembership(ResponseModel):
    organization: NamedRef
    role: RoleOut
    user: MemberOut


class EnvironmentMembership(ResponseModel):
    environment: NamedRef
    role: RoleOut
    user: MemberOut


class OrganizationMembershipsPayload(ResponseModel):
    memberships: list[OrganizationMembership]


class EnvironmentMembershipsPayload(ResponseModel):
    memberships: list[EnvironmentMembership]
