"""Redox's role model and the one permission check every service uses.

An organization role (owner, admin, member) and at most one environment role per
environment (engineer, support, viewer). Any environment role may read what the
environment holds; only an engineer may change it. Without a role in the environment,
the caller is told "not found", so nothing leaks about what exists.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from waypost.http import Forbidden, NotFound


class OrgRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class EnvRole(StrEnum):
    ENGINEER = "engineer"
    SUPPORT = "support"
    VIEWER = "viewer"


# Stable role ids (Redox's `role.id`), the same on every installation.
_ROLE_NAMESPACE = uuid.UUID("6f1c3a52-8f0e-4d0b-9a55-3f1f4e2b7c10")


def role_id(role: OrgRole | EnvRole) -> str:
    kind = "organization" if isinstance(role, OrgRole) else "environment"
    return str(uuid.uuid5(_ROLE_NAMESPACE, f"{kind}:{role.value}"))


def role_ref(role: OrgRole | EnvRole) -> dict[str, str]:
    return {"id": role_id(role), "name": role.value}


class Action(StrEnum):
    READ = "read"
    WRITE = "write"


def require_environment_role(role: str | None, action: Action, *, what: str) -> None:
    """`role` is the caller's role in the environment that holds `what`, or None."""
    if role is None:
        raise NotFound(f"No {what} with this id is visible to you.")
    if action is Action.WRITE and role != EnvRole.ENGINEER:
        raise Forbidden(
            f"Your role in this environment is {role}; only an engineer may change {what}s."
        )


def require_org_role(org_role: str, allowed: set[OrgRole], *, doing: str) -> None:
    if org_role not in allowed:
        names = " or ".join(sorted(allowed))
        raise Forbidden(f"{doing} needs the organization role {names}; yours is {org_role}.")
