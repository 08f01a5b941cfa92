"""Who is calling, and the one permission check every service uses.

An organization role (owner, admin, member) and at most one environment role per
environment (engineer, support, viewer). Any environment role may read what the
environment holds; only an engineer may change it. Without a role in the environment,
the caller is told "not found", so nothing leaks about what exists.

Every feature's routes require a `CurrentPrincipal`, so it lives here, below the
features. Looking a token up is auth's business: create_app() plugs auth's lookup in as
`app.state.authenticate`, which keeps auth (which reads users and records audit events)
from becoming a dependency of every router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from waypost.db import Database
from waypost.http import Forbidden, NotFound, Unauthorized
from waypost.kinds import EnvRole, OrgRole
from waypost.runtime import runtime


@dataclass(frozen=True, slots=True)
class Identity:
    """The user behind a live API token."""

    user_id: str
    organization_id: int
    org_role: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, and where the call came from (for the audit trail)."""

    user_id: str
    organization_id: int
    org_role: str
    request_ip: str | None = None
    route: str | None = None


# A bearer token (as sent) to its user, or None when it is unknown, expired or revoked.
Authenticate = Callable[[Database, str], Awaitable[Identity | None]]


NOT_LIVE = "The bearer token is unknown, expired or revoked."


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send an API token as `Authorization: Bearer <token>`.")
    return token.strip()


@dataclass(slots=True)
class Caller:
    """A request's bearer token before it is looked up. A hot route finds the token's
    user in its own statement (auth's `callers`), one round trip instead of two; once
    found, `principal` holds who is calling."""

    token: str
    request_ip: str | None
    route: str | None
    principal: Principal | None = None

    def identified(self, identity: Identity) -> Principal:
        self.principal = Principal(
            identity.user_id,
            identity.organization_id,
            identity.org_role,
            self.request_ip,
            self.route,
        )
        return self.principal

    @classmethod
    def of(cls, request: Request) -> Caller:
        route = request.scope.get("route")
        return cls(
            _bearer_token(request),
            request.client.host if request.client else None,
            f"{request.method} {route.path}" if route else request.url.path,
        )


async def unknown_caller(request: Request) -> Unauthorized | None:
    """For a request whose body broke a rule: a 401 when its route authenticates the
    caller itself (`CurrentCaller`, looked up only after the body is read) and the token
    is missing or not live; else None, and the body's problem is told."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not any(
        isinstance(d.call, BearerCaller) for d in dependant.dependencies
    ):
        return None
    try:
        token = _bearer_token(request)
    except Unauthorized as refusal:
        return refusal
    authenticate: Authenticate = request.app.state.authenticate
    if await authenticate(runtime(request).db, token) is None:
        return Unauthorized(NOT_LIVE)
    return None


class BearerAuth(HTTPBearer):
    """The security scheme in OpenAPI and the check itself, in one dependency: every
    request looks its token up again, so a revoked token fails on the next request."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        caller = Caller.of(request)
        authenticate: Authenticate = request.app.state.authenticate
        identity = await authenticate(runtime(request).db, caller.token)
        if identity is None:
            raise Unauthorized(NOT_LIVE)
        return caller.identified(identity)


class BearerCaller(HTTPBearer):
    """The same security scheme, with the lookup left to the route's own statement."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        return Caller.of(request)


_SCHEME = "An API token from `waypost tokens create`."
CurrentPrincipal = Annotated[
    Principal, Depends(BearerAuth(scheme_name="BearerAuth", description=_SCHEME))
]
CurrentCaller = Annotated[
    Caller, Depends(BearerCaller(scheme_name="BearerAuth", description=_SCHEME))
]


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
