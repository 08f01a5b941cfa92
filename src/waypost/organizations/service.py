"""Organizations, their three environments, users and role assignments.

`with_environment`, `caller_params` and `environment_access` are the one deliberate
exception to "a feature reads only its own tables": other features join a row's
environment (its flag, and the caller's role there) into their own lookups, so that one
statement both finds a row and checks access (docs/ARCHITECTURE.md). `identity_of` and
`identity_from` extend it to the token lookup: auth selects a user's organization and
role with the token, in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waypost import clock
from waypost.access import Action, Identity, Principal, require_environment_role
from waypost.db import Connection, Database, canonical_id, is_unique_violation, new_id
from waypost.http import Conflict, Invalid, NotFound
from waypost.kinds import EnvironmentFlag, EnvRole, OrgRole
from waypost.organizations import store
from waypost.organizations.store import (
    EnvironmentAccess,
    EnvironmentRow,
    OrganizationRow,
    UserRow,
    access_from,
    caller_from,
    environment_with_role_of,
    identity_from,
    identity_of,
    with_environment,
)

# For the joins above; the rest is used as `service.name`.
__all__ = [
    "EnvironmentAccess",
    "access_from",
    "caller_from",
    "environment_with_role_of",
    "identity_from",
    "identity_of",
    "with_environment",
]

MAX_ORGANIZATION_ID = 2**31 - 1  # the integer column's range on PostgreSQL


def _clean_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 255:
        raise Invalid("name", "the organization name must be 1 to 255 characters")
    return name


def _clean_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (at and local and domain) or len(email) > 320 or any(c.isspace() for c in email):
        raise Invalid("email", f"{email[:80]!r} is not an email address of at most 320 characters")
    return email


@dataclass(frozen=True, slots=True)
class NewOrganization:
    id: int
    name: str
    environments: list[EnvironmentRow]  # Development, Staging, Production
    owner: UserRow


@dataclass(frozen=True, slots=True)
class NewUser:
    user: UserRow
    environment_roles: dict[str, EnvRole]  # by environment id


@dataclass(frozen=True, slots=True)
class OrganizationListing:
    """An organization as `waypost orgs list` shows it."""

    organization: OrganizationRow
    environments: list[EnvironmentRow]  # Development, Staging, Production


@dataclass(frozen=True, slots=True)
class UserListing:
    """A user as `waypost users list` shows it."""

    user: UserRow
    environment_roles: list[tuple[EnvironmentRow, EnvRole]]  # Development first


def caller_params(principal: Principal) -> dict[str, Any]:
    """The parameters `caller_role` needs."""
    return {"user_id": principal.user_id, "organization_id": principal.organization_id}


async def environment_access(
    conn: Connection, principal: Principal, environment_id: str, action: Action, *, what: str
) -> EnvironmentAccess:
    """Checks the caller's role in an environment; returns it with its `id` and `flag`."""
    key = canonical_id(environment_id)
    found = None
    if key is not None:
        found = await store.environment_with_role(
            conn,
            environment_id=key,
            user_id=principal.user_id,
            organization_id=principal.organization_id,
        )
    return checked_access(found, action, what=what)


def checked_access(
    found: EnvironmentAccess | None, action: Action, *, what: str
) -> EnvironmentAccess:
    """The environment found, if the caller's role there allows `action`."""
    if found is None or found.role is None:
        raise NotFound("No environment with this id is visible to you.")
    require_environment_role(found.role, action, what=what)
    return found


async def create_organization(conn: Connection, *, name: str, owner_email: str) -> NewOrganization:
    """Inside the caller's write: the organization, its three environments and an owner
    who is an engineer in each."""
    name = _clean_name(name)
    email = _clean_email(owner_email)
    created = clock.now()
    org_id = await store.insert_organization(conn, name=name, created_at=created)
    envs = [EnvironmentRow(new_id(), org_id, flag.value, flag, created) for flag in EnvironmentFlag]
    await store.insert_environments(conn, envs)
    owner = UserRow(new_id(), org_id, email, email, OrgRole.OWNER, created)
    await store.insert_user(conn, owner)
    await store.insert_environment_roles(conn, [(e.id, owner.id, EnvRole.ENGINEER) for e in envs])
    return NewOrganization(org_id, name, envs, owner)


async def create_user(
    conn: Connection,
    *,
    organization_id: int,
    email: str,
    org_role: OrgRole,
    env_roles: dict[str, EnvRole],
) -> NewUser:
    """Inside the caller's write: a user of the organization with the given roles."""
    email = _clean_email(email)
    if not 1 <= organization_id <= MAX_ORGANIZATION_ID or (
        await store.organization_name(conn, organization_id) is None
    ):
        raise NotFound(f"no organization with id {organization_id}")
    if env_roles:
        found = await store.environment_ids_in(
            conn, organization_id=organization_id, environment_ids=env_roles
        )
        missing = sorted(set(env_roles) - found)
        if missing:
            raise NotFound(f"no environment {', '.join(missing)} in organization {organization_id}")
    user = UserRow(new_id(), organization_id, email, email, org_role, clock.now())
    try:
        await store.insert_user(conn, user)
    except sa.exc.IntegrityError as exc:
        if is_unique_violation(exc):
            raise Conflict(f"{email} is already a user of organization {organization_id}") from exc
        raise
    if env_roles:
        await store.insert_environment_roles(
            conn, [(env_id, user.id, role) for env_id, role in env_roles.items()]
        )
    return NewUser(user, env_roles)


async def member(conn: Connection, *, user_id: str) -> UserRow:
    """A user by id, for the command line."""
    key = canonical_id(user_id)
    found = None if key is None else await store.user(conn, user_id=key)
    if found is None:
        raise NotFound(f"no user with id {user_id}")
    return found


async def identity(conn: Connection, *, user_id: str) -> Identity | None:
    """The organization and organization role of a user (None: no such user)."""
    return await store.identity(conn, user_id=user_id)


async def organization_ids(conn: Connection) -> list[int]:
    """Inside the caller's transaction: every organization's id, oldest first."""
    return [o.id for o in await store.all_organizations(conn)]


async def has_organizations(db: Database) -> bool:
    async with db.read() as conn:
        return await store.count_organizations(conn) > 0


async def list_environments(
    db: Database, *, principal: Principal, organization_id: str
) -> list[EnvironmentRow]:
    """Only the environments where the caller holds a role, as Redox lists them."""
    if organization_id != str(principal.organization_id):
        raise NotFound("No organization with this id is visible to you.")
    async with db.read() as conn:
        return await store.environments_with_a_role(
            conn, user_id=principal.user_id, organization_id=principal.organization_id
        )


# The command line's views: an operator on the machine sees every organization.


async def list_organizations(db: Database) -> list[OrganizationListing]:
    """Every organization, oldest first, with its environments and number of users."""
    async with db.read() as conn:
        found = await store.all_organizations(conn)
        envs = await store.all_environments(conn)
    by_org: dict[int, list[EnvironmentRow]] = {}
    for env in envs:
        by_org.setdefault(env.organization_id, []).append(env)
    return [OrganizationListing(o, by_org.get(o.id, [])) for o in found]


async def list_users(db: Database, *, organization_id: int | None = None) -> list[UserListing]:
    """The users of one organization (or of all), oldest first, with their roles."""
    async with db.read() as conn:
        if organization_id is not None:
            await _require_organization(conn, organization_id)
        found = await store.users_with_roles(conn, organization_id=organization_id)
    return [UserListing(user, roles) for user, roles in found]


async def find_user(db: Database, *, user: str, organization_id: int | None = None) -> UserRow:
    """A user named by id or by email, for the command line. An email may be a user in
    several organizations: `organization_id` then says which."""
    async with db.read() as conn:
        if organization_id is not None:
            await _require_organization(conn, organization_id)
        if "@" not in user:
            key = canonical_id(user)
            found = None if key is None else await store.user(conn, user_id=key)
            if found is None:
                raise NotFound(f"no user with id {user}")
            if organization_id is not None and found.organization_id != organization_id:
                raise NotFound(f"user {user} is not in organization {organization_id}")
            return found
        email = user.strip().lower()
        matches = await store.users_by_email(conn, email=email, organization_id=organization_id)
    if not matches:
        where = "" if organization_id is None else f" in organization {organization_id}"
        raise NotFound(f"no user with email {email}{where}")
    if len(matches) > 1:
        orgs = ", ".join(str(u.organization_id) for u in matches)
        raise Conflict(
            f"{email} is a user in organizations {orgs}; "
            "name one with --org ORG_ID, or give the user id"
        )
    return matches[0]


async def _require_organization(conn: Connection, organization_id: int) -> None:
    if not 1 <= organization_id <= MAX_ORGANIZATION_ID or (
        await store.organization_name(conn, organization_id) is None
    ):
        raise NotFound(f"no organization with id {organization_id}")
