"""Organizations, their three environments, users and role assignments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waypost import clock
from waypost.access import Action, Principal, require_environment_role
from waypost.auth.service import UnknownError, issue_token
from waypost.db import (
    Connection,
    Database,
    Prepared,
    canonical_id,
    is_unique_violation,
    new_id,
)
from waypost.http import NotFound
from waypost.kinds import EnvironmentFlag, EnvRole, OrgRole
from waypost.organizations.tables import environment_roles, environments, organizations, users


class DuplicateError(ValueError):
    pass


class InvalidInput(ValueError):
    pass


MAX_ORGANIZATION_ID = 2**31 - 1  # the integer column's range on PostgreSQL


def _clean_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 255:
        raise InvalidInput("the organization name must be 1 to 255 characters")
    return name


def _clean_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (at and local and domain) or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidInput(f"{email[:80]!r} is not an email address of at most 320 characters")
    return email


@dataclass(frozen=True)
class NewUser:
    user: dict[str, Any]
    token_id: str
    token: str


# The caller's role in the environment of the row being queried: features join this
# into their own lookups, so that one statement finds a resource and checks access.
caller_role = (
    sa.select(environment_roles.c.role)
    .where(
        environment_roles.c.environment_id == environments.c.id,
        environment_roles.c.user_id == sa.bindparam("user_id"),
    )
    .scalar_subquery()
    .label("role")
)
_environment_with_role = Prepared(
    sa.select(environments.c.id, environments.c.flag, caller_role).where(
        environments.c.id == sa.bindparam("environment_id"),
        environments.c.organization_id == sa.bindparam("organization_id"),
    )
)


def caller_params(principal: Principal) -> dict[str, Any]:
    """The parameters `caller_role` needs."""
    return {"user_id": principal.user_id, "organization_id": principal.organization_id}


async def environment_access(
    conn: Connection, principal: Principal, environment_id: str, action: Action, *, what: str
) -> Any:
    """Checks the caller's role in an environment; returns its `id` and `flag`."""
    key = canonical_id(environment_id)
    row = None
    if key is not None:
        params = {**caller_params(principal), "environment_id": key}
        row = await conn.first(_environment_with_role, params)
    if row is None or row["role"] is None:
        raise NotFound("No environment with this id is visible to you.")
    require_environment_role(row["role"], action, what=what)
    return row


def environment_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "environmentFlag": row.flag,
        "organization": {"id": row.organization_id},
    }


async def create_organization(db: Database, name: str, owner_email: str) -> dict[str, Any]:
    """Creates the organization, its three environments, an owner engineer and a token."""
    name = _clean_name(name)
    email = _clean_email(owner_email)
    created = clock.now()
    async with db.write() as conn:
        org_id = (
            await conn.execute(
                organizations.insert()
                .values(name=name, created_at=created)
                .returning(organizations.c.id)
            )
        ).scalar_one()
        envs = [
            {
                "id": new_id(),
                "organization_id": org_id,
                "name": flag.value,
                "flag": flag.value,
                "created_at": created,
            }
            for flag in EnvironmentFlag
        ]
        await conn.execute(environments.insert(), envs)
        user_id = new_id()
        await conn.execute(
            users.insert().values(
                id=user_id,
                organization_id=org_id,
                email=email,
                fullname=email,
                org_role=OrgRole.OWNER,
                created_at=created,
            )
        )
        await conn.execute(
            environment_roles.insert(),
            [
                {"environment_id": e["id"], "user_id": user_id, "role": EnvRole.ENGINEER}
                for e in envs
            ],
        )
        token_id, token = await issue_token(conn, user_id)
    return {
        "organization": {"id": org_id, "name": name},
        "environments": [
            {"id": e["id"], "name": e["name"], "environmentFlag": e["flag"]} for e in envs
        ],
        "user": {"id": user_id, "email": email},
        "tokenId": token_id,
        "token": token,
    }


async def create_user(
    db: Database,
    organization_id: int,
    email: str,
    org_role: OrgRole,
    env_roles: dict[str, EnvRole],
) -> NewUser:
    email = _clean_email(email)
    if not 1 <= organization_id <= MAX_ORGANIZATION_ID:
        raise UnknownError(f"no organization with id {organization_id}")
    async with db.write() as conn:
        org = await conn.scalar(
            sa.select(organizations.c.id).where(organizations.c.id == organization_id)
        )
        if org is None:
            raise UnknownError(f"no organization with id {organization_id}")
        if env_roles:
            found = set(
                (
                    await conn.execute(
                        sa.select(environments.c.id).where(
                            environments.c.id.in_(list(env_roles)),
                            environments.c.organization_id == organization_id,
                        )
                    )
                ).scalars()
            )
            missing = sorted(set(env_roles) - found)
            if missing:
                raise UnknownError(
                    f"no environment {', '.join(missing)} in organization {organization_id}"
                )
        user_id = new_id()
        try:
            await conn.execute(
                users.insert().values(
                    id=user_id,
                    organization_id=organization_id,
                    email=email,
                    fullname=email,
                    org_role=org_role,
                    created_at=clock.now(),
                )
            )
        except sa.exc.IntegrityError as exc:
            if is_unique_violation(exc):
                raise DuplicateError(
                    f"{email} is already a user of organization {organization_id}"
                ) from exc
            raise
        if env_roles:
            await conn.execute(
                environment_roles.insert(),
                [
                    {"environment_id": env_id, "user_id": user_id, "role": role}
                    for env_id, role in env_roles.items()
                ],
            )
        token_id, token = await issue_token(conn, user_id)
    user = {
        "id": user_id,
        "email": email,
        "organization": {"id": organization_id},
        "orgRole": str(org_role),
        "environmentRoles": {env_id: str(role) for env_id, role in env_roles.items()},
    }
    return NewUser(user=user, token_id=token_id, token=token)


async def list_environments(
    db: Database, principal: Principal, organization_id: str
) -> list[dict[str, Any]]:
    """Only the environments where the caller holds a role, as Redox lists them."""
    if organization_id != str(principal.organization_id):
        raise NotFound("No organization with this id is visible to you.")
    query = (
        sa.select(
            environments.c.id,
            environments.c.name,
            environments.c.flag,
            environments.c.organization_id,
        )
        .join(environment_roles, environment_roles.c.environment_id == environments.c.id)
        .where(
            environment_roles.c.user_id == principal.user_id,
            environments.c.organization_id == principal.organization_id,
        )
        .order_by(
            sa.case(
                {flag.value: i for i, flag in enumerate(EnvironmentFlag)}, value=environments.c.flag
            ),
            environments.c.created_at,
        )
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [environment_view(r) for r in rows]
