"""Redox's role model and the one permission check every service uses.

An organization role (owner, admin, member) and at most one environment role per
environment (engineer, support, viewer). Any environment role may read what the
environment holds; only an engineer may change it. Without a role in the environment,
the caller is told "not found", so nothing leaks about what exists.
"""

from __future__ import annotations

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
