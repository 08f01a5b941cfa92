"""The audit trail: who changed what, when, from where. Each event is written in the same
transaction as the change it describes, so the trail and the data never disagree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from waypost import clock
from waypost.access import Caller, Principal, require_org_role
from waypost.audit import store
from waypost.audit.store import EventFilter, EventRow
from waypost.db import Connection, Database, new_id
from waypost.http import Forbidden, Invalid, NotFound, ProblemError
from waypost.kinds import OrgRole

# Every kind of event the trail holds: the audit search's `actionType` takes these (a value
# outside them is a 400 naming them), and mypy holds every writer to them.
ActionType = Literal[
    "api-key-created",
    "api-key-revoked",
    "api-token-created",
    "api-token-revoked",
    "apikey-created",
    "apikey-deleted",
    "auth-credential-created",
    "auth-credential-deleted",
    "auth-credential-updated",
    "destination-created",
    "destination-deleted",
    "destination-updated",
    "destination-verified",
    "environment-role-assigned",
    "environment-role-changed",
    "environment-role-removed",
    "organization-created",
    "organization-role-changed",
    "platform-token-issued",
    "secrets-reencrypted",
    "source-created",
    "source-deleted",
    "source-secret-rotated",
    "source-token-issued",
    "source-updated",
    "subscription-created",
    "subscription-deleted",
    "user-created",
]
EventStatus = Literal["successful", "failed"]

REDACTED = "changed"  # how a secret's change appears in `details`: never its value
MAX_PAGE = 50


@dataclass
class Event:
    type: ActionType
    details: dict[str, Any] = field(default_factory=dict)
    status: EventStatus = "successful"


@dataclass(frozen=True)
class Actor:
    """Who made a change: a caller of the API, or the command line (no user)."""

    organization_id: int
    user_id: str | None = None
    request_ip: str | None = None
    route: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(
            principal.organization_id, principal.user_id, principal.request_ip, principal.route
        )

    @classmethod
    def command_line(cls, organization_id: int, command: str) -> Actor:
        """A `waypost` command (`tokens create`): no user, no address; the route names it."""
        return cls(organization_id, route=f"cli: waypost {command}")


async def record(conn: Connection, actor: Actor, event: Event) -> None:
    await store.insert(
        conn,
        EventRow(
            new_id(),
            actor.organization_id,
            actor.user_id,
            actor.request_ip,
            actor.route,
            clock.now(),
            event.type,
            event.status,
            event.details,
        ),
    )


@asynccontextmanager
async def audited_write(
    db: Database,
    principal: Principal | Caller,
    event_type: ActionType,
    *,
    record_success: bool = True,
    refusals: tuple[type[ProblemError], ...] = (Forbidden,),
) -> AsyncIterator[tuple[Connection, Event]]:
    """A write transaction whose event is recorded inside it. A refusal (by default a
    403) rolls the change back and is recorded on its own, with status `failed`. A
    `Caller` is identified inside the transaction (auth's `callers`), before any refusal."""
    event = Event(event_type)
    try:
        async with db.write() as conn:
            yield conn, event
            if record_success:
                await record(conn, Actor.of(_identified(principal)), event)
    except refusals as exc:
        await record_failure(db, _identified(principal), event, exc.detail)
        raise


def _identified(who: Principal | Caller) -> Principal:
    if isinstance(who, Principal):
        return who
    assert who.principal is not None, "a caller is identified before anything is recorded"
    return who.principal


async def record_failure(db: Database, principal: Principal, event: Event, reason: str) -> None:
    event.status = "failed"
    event.details["reason"] = reason
    async with db.write() as conn:
        await record(conn, Actor.of(principal), event)


def changes(old: dict[str, Any], new: dict[str, Any], secrets: frozenset[str]) -> dict[str, Any]:
    """`{field: {"old", "new"}}` for the fields that changed; a secret shows only "changed"."""
    described: dict[str, Any] = {}
    for name, value in new.items():
        if name in secrets:
            described[name] = REDACTED
        elif old.get(name) != value:
            described[name] = {"old": old.get(name), "new": value}
    return described


def _parse_time(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return clock.format(clock.parse(value, require_zone=True))
    except clock.NoTimeZone:
        raise Invalid(name, "must carry a time zone, e.g. Z") from None
    except ValueError:
        raise Invalid(
            name, "must be an ISO 8601 date-time, e.g. 2026-01-10T19:46:40.081Z"
        ) from None
    except OverflowError:
        raise Invalid(name, "lies outside the calendar Waypost can search") from None


async def search(
    db: Database,
    *,
    principal: Principal,
    organization_id: str,
    user_id: str | None,
    start: str | None,
    stop: str | None,
    status: EventStatus | None,
    action_types: list[ActionType],
    page: int,
    count: int,
) -> tuple[list[EventRow], bool]:
    """One page of events, newest first, and whether another page follows."""
    if organization_id != str(principal.organization_id):
        raise NotFound("No organization with this id is visible to you.")
    require_org_role(
        principal.org_role, {OrgRole.OWNER, OrgRole.ADMIN}, doing="Reading audit events"
    )
    kept = EventFilter(
        principal.organization_id,
        user_id=user_id,
        start=_parse_time("startDateTime", start),
        stop=_parse_time("stopDateTime", stop),
        status=status,
        action_types=action_types,
    )
    async with db.read() as conn:
        rows = await store.search(conn, kept, offset=(page - 1) * count, limit=count + 1)
    return rows[:count], len(rows) > count
