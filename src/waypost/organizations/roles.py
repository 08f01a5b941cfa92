"""Role assignments, Redox's way: one organization role per user, at most one role per
environment. Owners and admins manage environment roles; only owners change
organization roles, and an organization always keeps at least one owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa

from waypost.access import Principal, require_org_role
from waypost.audit.service import ActionType, audited_write
from waypost.db import Connection, Database, canonical_id, is_unique_violation
from waypost.http import Conflict, Invalid, NotFound
from waypost.kinds import EnvRole, OrgRole
from waypost.organizations import store
from waypost.organizations.schemas import OrgRoleAssignment, RoleRef, UserRef, role_id
from waypost.organizations.store import EnvironmentRow, UserRow

MANAGERS = {OrgRole.OWNER, OrgRole.ADMIN}

R = TypeVar("R", OrgRole, EnvRole)


def _resolve(kind: type[R], ref: RoleRef) -> R:
    for role in kind:
        by_name = ref.name is None or ref.name == role.value
        by_id = ref.id is None or str(ref.id) == role_id(role)
        if by_name and by_id:
            return role
    names = ", ".join(r.value for r in kind)
    raise Invalid("role", f"no such role here; the roles are {names} (by name or id)")


def _own_organization(principal: Principal, organization_id: str) -> None:
    if organization_id != str(principal.organization_id):
        raise NotFound("No organization with this id is visible to you.")


async def _organization_member(conn: Connection, principal: Principal, user_id: str) -> UserRow:
    key = canonical_id(user_id)
    found = None
    if key is not None:
        found = await store.user(conn, user_id=key, organization_id=principal.organization_id)
    if found is None:
        raise Invalid("user.id", "no user with this id in your organization")
    return found


async def _environment(
    conn: Connection, principal: Principal, environment_id: str
) -> EnvironmentRow:
    key = canonical_id(environment_id)
    found = None
    if key is not None:
        found = await store.environment(
            conn, environment_id=key, organization_id=principal.organization_id
        )
    if found is None:
        raise NotFound("No environment with this id is visible to you.")
    return found


@dataclass(frozen=True, slots=True)
class OrganizationMembership:
    organization_id: int
    organization_name: str
    user: UserRow


@dataclass(frozen=True, slots=True)
class EnvironmentMembership:
    environment: EnvironmentRow
    role: EnvRole
    user: UserRow


async def organization_memberships(
    db: Database, *, principal: Principal, organization_id: str
) -> list[OrganizationMembership]:
    _own_organization(principal, organization_id)
    require_org_role(principal.org_role, MANAGERS, doing="Listing organization roles")
    async with db.read() as conn:
        name = await store.organization_name(conn, principal.organization_id)
        members = await store.members(conn, organization_id=principal.organization_id)
    assert name is not None  # the caller's own organization
    return [OrganizationMembership(principal.organization_id, name, user) for user in members]


async def set_organization_role(
    db: Database, *, principal: Principal, organization_id: str, body: OrgRoleAssignment
) -> None:
    _own_organization(principal, organization_id)
    role = _resolve(OrgRole, body.role)
    async with audited_write(db, principal, "organization-role-changed") as (conn, event):
        # One organization-role change at a time: two owners demoting each other at once
        # must not leave the organization without an owner. The caller's own role is read
        # again under the lock, since the other change may have just demoted them.
        await store.lock_organization(conn, principal.organization_id)
        caller = await store.user(conn, user_id=principal.user_id)
        assert caller is not None  # the token was checked against this user
        require_org_role(caller.org_role, {OrgRole.OWNER}, doing="Changing organization roles")
        user = await _organization_member(conn, principal, body.user.id)
        event.details = {
            "userId": user.id,
            "role": {"old": user.org_role.value, "new": role.value},
        }
        if user.org_role == OrgRole.OWNER and role != OrgRole.OWNER:
            owners = await store.count_owners(conn, organization_id=principal.organization_id)
            if owners <= 1:
                raise Conflict("This is the organization's last owner; make another owner first.")
        await store.set_org_role(conn, user_id=user.id, role=role)


async def environment_memberships(
    db: Database, *, principal: Principal, environment_id: str
) -> list[EnvironmentMembership]:
    async with db.read() as conn:
        env = await _environment(conn, principal, environment_id)
        require_org_role(principal.org_role, MANAGERS, doing="Listing environment roles")
        members = await store.environment_members(conn, environment_id=env.id)
    return [EnvironmentMembership(env, role, user) for user, role in members]


async def change_environment_role(
    db: Database,
    *,
    principal: Principal,
    environment_id: str,
    user_ref: UserRef,
    role_ref_given: RoleRef | None,
    mode: str,
) -> None:
    """mode: "assign" (POST; none may exist), "change" (PUT) or "remove" (DELETE)."""
    role = _resolve(EnvRole, role_ref_given) if role_ref_given is not None else None
    event_types: dict[str, ActionType] = {
        "assign": "environment-role-assigned",
        "change": "environment-role-changed",
        "remove": "environment-role-removed",
    }
    async with audited_write(db, principal, event_types[mode]) as (conn, event):
        env = await _environment(conn, principal, environment_id)
        require_org_role(principal.org_role, MANAGERS, doing="Managing environment roles")
        user = await _organization_member(conn, principal, user_ref.id)
        current = await store.environment_role(conn, environment_id=env.id, user_id=user.id)
        event.details = {
            "environmentId": env.id,
            "userId": user.id,
            "role": {"old": current, "new": role.value if role else None},
        }
        if mode == "assign":
            if current is not None:
                raise Conflict(
                    f"The user already has the role {current} here; use PUT to change it."
                )
            assert role is not None
            try:
                await store.insert_environment_roles(conn, [(env.id, user.id, role)])
            except sa.exc.IntegrityError as exc:  # a concurrent assignment won the race
                if is_unique_violation(exc):
                    raise Conflict(
                        "The user already has a role here; use PUT to change it."
                    ) from exc
                raise
        elif current is None:
            raise Conflict("The user has no role in this environment; use POST to assign one.")
        elif mode == "change":
            assert role is not None
            await store.update_environment_role(
                conn, environment_id=env.id, user_id=user.id, role=role
            )
        else:
            await store.delete_environment_role(conn, environment_id=env.id, user_id=user.id)
