"""Every statement on organizations, environments, users and environment roles, answering
typed rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waypost.access import Identity
from waypost.db import Connection, Prepared
from waypost.kinds import EnvironmentFlag, EnvRole, OrgRole
from waypost.organizations.tables import environment_roles, environments, organizations, users


@dataclass(frozen=True, slots=True)
class EnvironmentRow:
    id: str
    organization_id: int
    name: str
    flag: EnvironmentFlag
    created_at: str


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    organization_id: int
    email: str
    fullname: str
    org_role: OrgRole
    created_at: str


@dataclass(frozen=True, slots=True)
class EnvironmentAccess:
    """An environment and the caller's role in it (None: no role)."""

    id: str
    flag: EnvironmentFlag
    role: EnvRole | None


def _environment(row: sa.RowMapping) -> EnvironmentRow:
    return EnvironmentRow(
        row["id"],
        row["organization_id"],
        row["name"],
        EnvironmentFlag(row["flag"]),
        row["created_at"],
    )


def _user(row: sa.RowMapping) -> UserRow:
    return UserRow(
        row["id"],
        row["organization_id"],
        row["email"],
        row["fullname"],
        OrgRole(row["org_role"]),
        row["created_at"],
    )


def _role_of(user_id: sa.ColumnElement[str]) -> sa.Label[Any]:
    """The role of the user `user_id` in the environment of the row being queried."""
    return (
        sa.select(environment_roles.c.role)
        .where(
            environment_roles.c.environment_id == environments.c.id,
            environment_roles.c.user_id == user_id,
        )
        .scalar_subquery()
        .label("role")
    )


# The caller's role in the environment of the row being queried: features join this
# into their own lookups, so that one statement finds a resource and checks access.
caller_role = _role_of(sa.bindparam("user_id"))

# The caller's identity as `with_environment(caller_user=...)` selects it.
CALLER_COLUMNS = ("caller_user_id", "caller_organization_id", "caller_org_role")
_CALLER_IDENTITY = (users.c.id, users.c.organization_id, users.c.org_role)


def with_environment(
    query: sa.Select[Any],
    environment_id: sa.ColumnElement[str],
    *,
    caller: bool = False,
    organization: bool = False,
    of_caller_organization: bool = False,
    caller_user: sa.ColumnElement[str] | None = None,
) -> sa.Select[Any]:
    """Another feature's lookup with its row's environment joined in: the `flag` column,
    with `caller` the caller's environment `role` (parameter `user_id`), with
    `organization` the `organization_id` column, and with `of_caller_organization` only
    rows of the caller's organization (parameter `organization_id`).

    `caller_user` names the caller by a column instead (auth's token lookup, folded into
    the same statement): the two parameters become that user's own columns, and the
    caller's identity comes along (`CALLER_COLUMNS`, read with `caller_from`).

    The one deliberate exception to "a feature reads only its own tables": one statement
    both finds a resource and checks access, rather than two round trips per request."""
    query = query.join(environments, environments.c.id == environment_id).add_columns(
        environments.c.flag
    )
    user_id: sa.ColumnElement[Any] = sa.bindparam("user_id")
    organization_id: sa.ColumnElement[Any] = sa.bindparam("organization_id")
    if caller_user is not None:
        user_id, organization_id = users.c.id, users.c.organization_id
        query = query.add_columns(
            *(c.label(name) for c, name in zip(_CALLER_IDENTITY, CALLER_COLUMNS, strict=True))
        ).where(users.c.id == caller_user)
    if organization:
        query = query.add_columns(environments.c.organization_id)
    if caller:
        query = query.add_columns(caller_role if caller_user is None else _role_of(user_id))
    if of_caller_organization:
        query = query.where(environments.c.organization_id == organization_id)
    return query


def caller_from(row: Mapping[str, Any]) -> Identity:
    """The caller's identity in a row selected with `with_environment(caller_user=...)`."""
    return Identity(*(row[name] for name in CALLER_COLUMNS))


def environment_with_role_of(caller_user: sa.ColumnElement[str]) -> sa.Select[Any]:
    """The environment `environment_id` (parameter) in the caller's organization, with the
    caller's role there and identity (`caller_from`); the caller named by a column."""
    return sa.select(
        environments.c.id,
        environments.c.flag,
        _role_of(users.c.id),
        *(c.label(name) for c, name in zip(_CALLER_IDENTITY, CALLER_COLUMNS, strict=True)),
    ).where(
        environments.c.id == sa.bindparam("environment_id"),
        environments.c.organization_id == users.c.organization_id,
        users.c.id == caller_user,
    )


_environment_with_role = Prepared(
    sa.select(environments.c.id, environments.c.flag, caller_role).where(
        environments.c.id == sa.bindparam("environment_id"),
        environments.c.organization_id == sa.bindparam("organization_id"),
    )
)


def access_from(row: Mapping[str, Any]) -> EnvironmentAccess:
    role = None if row["role"] is None else EnvRole(row["role"])
    return EnvironmentAccess(row["id"], EnvironmentFlag(row["flag"]), role)


async def environment_with_role(
    conn: Connection, *, environment_id: str, user_id: str, organization_id: int
) -> EnvironmentAccess | None:
    row = await conn.first(
        _environment_with_role,
        {"environment_id": environment_id, "user_id": user_id, "organization_id": organization_id},
    )
    return None if row is None else access_from(row)


async def environment(
    conn: Connection, *, environment_id: str, organization_id: int
) -> EnvironmentRow | None:
    row = (
        await conn.execute(
            sa.select(environments).where(
                environments.c.id == environment_id,
                environments.c.organization_id == organization_id,
            )
        )
    ).first()
    return None if row is None else _environment(row._mapping)


async def environments_with_a_role(
    conn: Connection, *, user_id: str, organization_id: int
) -> list[EnvironmentRow]:
    """The environments where the user holds a role: Development, Staging, Production."""
    order = {flag.value: i for i, flag in enumerate(EnvironmentFlag)}
    query = (
        sa.select(environments)
        .join(environment_roles, environment_roles.c.environment_id == environments.c.id)
        .where(
            environment_roles.c.user_id == user_id,
            environments.c.organization_id == organization_id,
        )
        .order_by(sa.case(order, value=environments.c.flag), environments.c.created_at)
    )
    return [_environment(r._mapping) for r in (await conn.execute(query)).all()]


async def environment_ids_in(
    conn: Connection, *, organization_id: int, environment_ids: Iterable[str]
) -> set[str]:
    query = sa.select(environments.c.id).where(
        environments.c.id.in_(list(environment_ids)),
        environments.c.organization_id == organization_id,
    )
    return set((await conn.execute(query)).scalars())


async def insert_organization(conn: Connection, *, name: str, created_at: str) -> int:
    query = (
        organizations.insert()
        .values(name=name, created_at=created_at)
        .returning(organizations.c.id)
    )
    organization_id: int = (await conn.execute(query)).scalar_one()
    return organization_id


async def organization_name(conn: Connection, organization_id: int) -> str | None:
    name: str | None = await conn.scalar(
        sa.select(organizations.c.name).where(organizations.c.id == organization_id)
    )
    return name


async def count_organizations(conn: Connection) -> int:
    count: int = await conn.scalar(sa.select(sa.func.count()).select_from(organizations))
    return count


async def lock_organization(conn: Connection, organization_id: int) -> None:
    """Holds the organization's row until the transaction ends (PostgreSQL; SQLite's
    writers take turns anyway)."""
    await conn.execute(
        sa.select(organizations.c.id).where(organizations.c.id == organization_id).with_for_update()
    )


async def insert_environments(conn: Connection, rows: list[EnvironmentRow]) -> None:
    await conn.execute(
        environments.insert(),
        [
            {
                "id": e.id,
                "organization_id": e.organization_id,
                "name": e.name,
                "flag": e.flag.value,
                "created_at": e.created_at,
            }
            for e in rows
        ],
    )


async def insert_user(conn: Connection, user: UserRow) -> None:
    """Raises IntegrityError (a unique violation) when the email is taken in the
    organization."""
    await conn.execute(
        users.insert().values(
            id=user.id,
            organization_id=user.organization_id,
            email=user.email,
            fullname=user.fullname,
            org_role=user.org_role.value,
            created_at=user.created_at,
        )
    )


def identity_of(user_id: sa.ColumnElement[str]) -> sa.Select[Any]:
    """What a principal needs of the user that `user_id` names, read with `identity_from`.
    `user_id` may be another feature's column: auth selects this with its token lookup,
    so that authenticating a request (the hot path of every call) is one statement."""
    return sa.select(users.c.id.label("user_id"), users.c.organization_id, users.c.org_role).where(
        users.c.id == user_id
    )


def identity_from(row: Mapping[str, Any]) -> Identity:
    return Identity(row["user_id"], row["organization_id"], row["org_role"])


_identity = Prepared(identity_of(sa.bindparam("user_id")))


async def identity(conn: Connection, *, user_id: str) -> Identity | None:
    row = await conn.first(_identity, {"user_id": user_id})
    return None if row is None else identity_from(row)


async def user(
    conn: Connection, *, user_id: str, organization_id: int | None = None
) -> UserRow | None:
    query = sa.select(users).where(users.c.id == user_id)
    if organization_id is not None:
        query = query.where(users.c.organization_id == organization_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _user(row._mapping)


async def members(conn: Connection, *, organization_id: int) -> list[UserRow]:
    query = (
        sa.select(users)
        .where(users.c.organization_id == organization_id)
        .order_by(users.c.created_at, users.c.id)
    )
    return [_user(r._mapping) for r in (await conn.execute(query)).all()]


async def count_owners(conn: Connection, *, organization_id: int) -> int:
    count: int = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(users)
        .where(users.c.organization_id == organization_id, users.c.org_role == OrgRole.OWNER)
    )
    return count


async def set_org_role(conn: Connection, *, user_id: str, role: OrgRole) -> None:
    await conn.execute(users.update().where(users.c.id == user_id).values(org_role=role.value))


async def environment_members(
    conn: Connection, *, environment_id: str
) -> list[tuple[UserRow, EnvRole]]:
    query = (
        sa.select(users, environment_roles.c.role)
        .join(environment_roles, environment_roles.c.user_id == users.c.id)
        .where(environment_roles.c.environment_id == environment_id)
        .order_by(users.c.created_at, users.c.id)
    )
    return [(_user(r._mapping), EnvRole(r.role)) for r in (await conn.execute(query)).all()]


async def environment_role(
    conn: Connection, *, environment_id: str, user_id: str
) -> EnvRole | None:
    role = await conn.scalar(
        sa.select(environment_roles.c.role).where(
            environment_roles.c.environment_id == environment_id,
            environment_roles.c.user_id == user_id,
        )
    )
    return None if role is None else EnvRole(role)


async def insert_environment_roles(
    conn: Connection, roles: Iterable[tuple[str, str, EnvRole]]
) -> None:
    """(environment id, user id, role) each. A role the user already holds there raises
    IntegrityError (a unique violation)."""
    await conn.execute(
        environment_roles.insert(),
        [{"environment_id": e, "user_id": u, "role": r.value} for e, u, r in roles],
    )


def _role_key(environment_id: str, user_id: str) -> sa.ColumnElement[bool]:
    return (environment_roles.c.environment_id == environment_id) & (
        environment_roles.c.user_id == user_id
    )


async def update_environment_role(
    conn: Connection, *, environment_id: str, user_id: str, role: EnvRole
) -> None:
    await conn.execute(
        environment_roles.update().where(_role_key(environment_id, user_id)).values(role=role.value)
    )


async def delete_environment_role(conn: Connection, *, environment_id: str, user_id: str) -> None:
    await conn.execute(environment_roles.delete().where(_role_key(environment_id, user_id)))


@dataclass(frozen=True, slots=True)
class OrganizationRow:
    id: int
    name: str
    created_at: str
    users: int  # how many users it has


async def all_organizations(conn: Connection) -> list[OrganizationRow]:
    """Every organization with its number of users, oldest first (the command line's)."""
    counted = (
        sa.select(users.c.organization_id, sa.func.count().label("users"))
        .group_by(users.c.organization_id)
        .subquery()
    )
    query = (
        sa.select(organizations, sa.func.coalesce(counted.c.users, 0).label("users"))
        .outerjoin(counted, counted.c.organization_id == organizations.c.id)
        .order_by(organizations.c.id)
    )
    return [
        OrganizationRow(r.id, r.name, r.created_at, r.users)
        for r in (await conn.execute(query)).all()
    ]


async def all_environments(conn: Connection) -> list[EnvironmentRow]:
    """Every environment, by organization: Development, Staging, Production."""
    order = {flag.value: i for i, flag in enumerate(EnvironmentFlag)}
    query = sa.select(environments).order_by(
        environments.c.organization_id,
        sa.case(order, value=environments.c.flag),
        environments.c.created_at,
    )
    return [_environment(r._mapping) for r in (await conn.execute(query)).all()]


async def users_with_roles(
    conn: Connection, *, organization_id: int | None
) -> list[tuple[UserRow, list[tuple[EnvironmentRow, EnvRole]]]]:
    """Users (of one organization, or all) oldest first, each with its environment roles
    (Development, Staging, Production)."""
    order = {flag.value: i for i, flag in enumerate(EnvironmentFlag)}
    env = environments.alias("env")
    query = (
        sa.select(
            users,
            environment_roles.c.role,
            env.c.id.label("env_id"),
            env.c.organization_id.label("env_organization_id"),
            env.c.name.label("env_name"),
            env.c.flag.label("env_flag"),
            env.c.created_at.label("env_created_at"),
        )
        .outerjoin(environment_roles, environment_roles.c.user_id == users.c.id)
        .outerjoin(env, env.c.id == environment_roles.c.environment_id)
        .order_by(
            users.c.organization_id,
            users.c.created_at,
            users.c.id,
            sa.case(order, value=env.c.flag),
            env.c.created_at,
        )
    )
    if organization_id is not None:
        query = query.where(users.c.organization_id == organization_id)
    found: dict[str, tuple[UserRow, list[tuple[EnvironmentRow, EnvRole]]]] = {}
    for r in (await conn.execute(query)).all():
        row = r._mapping
        _, roles = found.setdefault(row["id"], (_user(row), []))
        if row["env_id"] is not None:
            environment = EnvironmentRow(
                row["env_id"],
                row["env_organization_id"],
                row["env_name"],
                EnvironmentFlag(row["env_flag"]),
                row["env_created_at"],
            )
            roles.append((environment, EnvRole(row["role"])))
    return list(found.values())


async def users_by_email(
    conn: Connection, *, email: str, organization_id: int | None = None
) -> list[UserRow]:
    """The users with this (cleaned) email: one per organization at most."""
    query = sa.select(users).where(users.c.email == email).order_by(users.c.organization_id)
    if organization_id is not None:
        query = query.where(users.c.organization_id == organization_id)
    return [_user(r._mapping) for r in (await conn.execute(query)).all()]
