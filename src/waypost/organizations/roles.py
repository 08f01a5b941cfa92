"""Role assignments, Redox's way: one organization role per user, at most one role per
environment. Owners and admins manage environment roles; only owners change
organization roles, and an organization always keeps at least one owner."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy as sa
from pydantic import model_validator

from waypost.access import Principal, require_org_role
from waypost.audit.service import audited_write
from waypost.db import Connection, Database, canonical_id, is_unique_violation
from waypost.http import Conflict, Invalid, NotFound, WireModel
from waypost.kinds import EnvRole, OrgRole
from waypost.organizations.tables import environment_roles, environments, organizations, users

MANAGERS = {OrgRole.OWNER, OrgRole.ADMIN}

# Stable role ids (Redox's `role.id`), the same on every installation.
_ROLE_NAMESPACE = uuid.UUID("6f1c3a52-8f0e-4d0b-9a55-3f1f4e2b7c10")


def role_id(role: OrgRole | EnvRole) -> str:
    kind = "organization" if isinstance(role, OrgRole) else "environment"
    return str(uuid.uuid5(_ROLE_NAMESPACE, f"{kind}:{role.value}"))


def role_ref(role: OrgRole | EnvRole) -> dict[str, str]:
    return {"id": role_id(role), "name": role.value}


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


R = TypeVar("R", OrgRole, EnvRole)


def _resolve(kind: type[R], ref: RoleRef) -> R:
    for role in kind:
        by_name = ref.name is None or ref.name == role.value
        by_id = ref.id is None or str(ref.id) == role_id(role)
        if by_name and by_id:
            return role
    names = ", ".join(r.value for r in kind)
    raise Invalid("role", f"no such role here; the roles are {names} (by name or id)")


def _user_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "fullname": row.fullname, "lowercaseEmail": row.email}


def _own_organization(principal: Principal, organization_id: str) -> None:
    if organization_id != str(principal.organization_id):
        raise NotFound("No organization with this id is visible to you.")


async def _organization_member(conn: Connection, principal: Principal, user_id: str) -> Any:
    key = canonical_id(user_id)
    row = None
    if key is not None:
        row = (
            await conn.execute(
                sa.select(users).where(
                    users.c.id == key, users.c.organization_id == principal.organization_id
                )
            )
        ).first()
    if row is None:
        raise Invalid("user.id", "no user with this id in your organization")
    return row


async def _environment(conn: Connection, principal: Principal, environment_id: str) -> Any:
    key = canonical_id(environment_id)
    row = None
    if key is not None:
        row = (
            await conn.execute(
                sa.select(environments).where(
                    environments.c.id == key,
                    environments.c.organization_id == principal.organization_id,
                )
            )
        ).first()
    if row is None:
        raise NotFound("No environment with this id is visible to you.")
    return row


async def organization_memberships(
    db: Database, principal: Principal, organization_id: str
) -> list[dict[str, Any]]:
    _own_organization(principal, organization_id)
    require_org_role(principal.org_role, MANAGERS, doing="Listing organization roles")
    query = (
        sa.select(users, organizations.c.name.label("organization_name"))
        .join(organizations, organizations.c.id == users.c.organization_id)
        .where(users.c.organization_id == principal.organization_id)
        .order_by(users.c.created_at, users.c.id)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "organization": {"id": r.organization_id, "name": r.organization_name},
            "role": role_ref(OrgRole(r.org_role)),
            "user": _user_view(r),
        }
        for r in rows
    ]


async def set_organization_role(
    db: Database, principal: Principal, organization_id: str, body: OrgRoleAssignment
) -> None:
    _own_organization(principal, organization_id)
    role = _resolve(OrgRole, body.role)
    async with audited_write(db, principal, "organization-role-changed") as (conn, event):
        # One organization-role change at a time: two owners demoting each other at once
        # must not leave the organization without an owner. The caller's own role is read
        # again under the lock, since the other change may have just demoted them.
        await conn.execute(
            sa.select(organizations.c.id)
            .where(organizations.c.id == principal.organization_id)
            .with_for_update()
        )
        caller_role = await conn.scalar(
            sa.select(users.c.org_role).where(users.c.id == principal.user_id)
        )
        require_org_role(caller_role, {OrgRole.OWNER}, doing="Changing organization roles")
        user = await _organization_member(conn, principal, body.user.id)
        event.details = {"userId": user.id, "role": {"old": user.org_role, "new": role.value}}
        if user.org_role == OrgRole.OWNER and role != OrgRole.OWNER:
            owners = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(users)
                .where(
                    users.c.organization_id == principal.organization_id,
                    users.c.org_role == OrgRole.OWNER,
                )
            )
            if owners <= 1:
                raise Conflict("This is the organization's last owner; make another owner first.")
        await conn.execute(users.update().where(users.c.id == user.id).values(org_role=role.value))


async def environment_memberships(
    db: Database, principal: Principal, environment_id: str
) -> list[dict[str, Any]]:
    async with db.read() as conn:
        env = await _environment(conn, principal, environment_id)
        require_org_role(principal.org_role, MANAGERS, doing="Listing environment roles")
        rows = (
            await conn.execute(
                sa.select(users, environment_roles.c.role)
                .join(environment_roles, environment_roles.c.user_id == users.c.id)
                .where(environment_roles.c.environment_id == env.id)
                .order_by(users.c.created_at, users.c.id)
            )
        ).all()
    return [
        {
            "environment": {"id": env.id, "name": env.name},
            "role": role_ref(EnvRole(r.role)),
            "user": _user_view(r),
        }
        for r in rows
    ]


async def change_environment_role(
    db: Database,
    principal: Principal,
    environment_id: str,
    user_ref: UserRef,
    role_ref_given: RoleRef | None,
    *,
    mode: str,
) -> None:
    """mode: "assign" (POST; none may exist), "change" (PUT) or "remove" (DELETE)."""
    role = _resolve(EnvRole, role_ref_given) if role_ref_given is not None else None
    event_type = {
        "assign": "environment-role-assigned",
        "change": "environment-role-changed",
        "remove": "environment-role-removed",
    }[mode]
    async with audited_write(db, principal, event_type) as (conn, event):
        env = await _environment(conn, principal, environment_id)
        require_org_role(principal.org_role, MANAGERS, doing="Managing environment roles")
        user = await _organization_member(conn, principal, user_ref.id)
        current = await conn.scalar(
            sa.select(environment_roles.c.role).where(
                environment_roles.c.environment_id == env.id,
                environment_roles.c.user_id == user.id,
            )
        )
        event.details = {
            "environmentId": env.id,
            "userId": user.id,
            "role": {"old": current, "new": role.value if role else None},
        }
        key = (environment_roles.c.environment_id == env.id) & (
            environment_roles.c.user_id == user.id
        )
        if mode == "assign":
            if current is not None:
                raise Conflict(
                    f"The user already has the role {current} here; use PUT to change it."
                )
            assert role is not None
            try:
                await conn.execute(
                    environment_roles.insert().values(
                        environment_id=env.id, user_id=user.id, role=role.value
                    )
                )
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
            await conn.execute(environment_roles.update().where(key).values(role=role.value))
        else:
            await conn.execute(environment_roles.delete().where(key))
