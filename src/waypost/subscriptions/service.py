"""Subscriptions: what may go where, a (source, destination, data model) triple in one
environment. Ingest asks `is_subscribed` about the destinations a message names, and
`subscribed_destinations` where a message that names none may go."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import sqlalchemy as sa

from waypost import clock
from waypost.access import Action, Principal, require_environment_role
from waypost.audit.service import audited_write
from waypost.db import (
    Connection,
    canonical_id,
    is_foreign_key_violation,
    is_unique_violation,
    new_id,
)
from waypost.destinations import service as destinations
from waypost.http import Conflict, Invalid, decode_cursor, encode_cursor
from waypost.kinds import EnvironmentFlag
from waypost.organizations import service as organizations
from waypost.organizations.service import caller_params, environment_access
from waypost.runtime import Runtime
from waypost.sources import service as sources
from waypost.subscriptions import store
from waypost.subscriptions.schemas import (
    SubscriptionCreate,
    SubscriptionEnd,
    SubscriptionEnvironment,
    SubscriptionOut,
)
from waypost.subscriptions.store import Located, SubscriptionRow

MAX_PAGE = 1000
_WHAT = "subscription"


async def subscribed_destinations(
    conn: Connection, *, source_id: str, data_model: str
) -> list[str]:
    """Destination ids subscribed from this source for this data model (matched without
    spaces), in subscription creation order."""
    return await store.destination_ids(conn, source_id=source_id, data_model=data_model)


async def is_subscribed(
    conn: Connection, *, source_id: str, data_model: str, destination_id: str
) -> bool:
    """Whether this source may send this data model (matched without spaces) to this
    destination: one index lookup, however many destinations the source feeds."""
    return await store.has_route(
        conn, source_id=source_id, data_model=data_model, destination_id=destination_id
    )


def _view(
    row: SubscriptionRow,
    flag: EnvironmentFlag,
    source_names: Mapping[str, str],
    dest_names: Mapping[str, str],
) -> SubscriptionOut:
    return SubscriptionOut(
        id=row.id,
        source=SubscriptionEnd(id=row.source_id, name=source_names.get(row.source_id, "")),
        destination=SubscriptionEnd(
            id=row.destination_id, name=dest_names.get(row.destination_id, "")
        ),
        data_model=row.data_model,
        environment=SubscriptionEnvironment(id=row.environment_id, environment_flag=flag),
        created_at=row.created_at,
    )


async def _names(
    conn: Connection, rows: Collection[SubscriptionRow]
) -> tuple[dict[str, str], dict[str, str]]:
    """The current names of the sources and destinations these subscriptions join, asked of
    their features once per distinct id (a page names few)."""
    source_names: dict[str, str] = {}
    for source_id in {r.source_id for r in rows}:
        source = await sources.get_source(conn, source_id)
        if source is not None:
            source_names[source_id] = source.name
    dest_names: dict[str, str] = {}
    for destination_id in {r.destination_id for r in rows}:
        name = await destinations.name_in_environment(conn, destination_id=destination_id)
        if name is not None:
            dest_names[destination_id] = name
    return source_names, dest_names


async def _views(
    conn: Connection, rows: Collection[SubscriptionRow], flags: Mapping[str, EnvironmentFlag]
) -> list[SubscriptionOut]:
    source_names, dest_names = await _names(conn, rows)
    return [_view(r, flags[r.environment_id], source_names, dest_names) for r in rows]


async def create(
    rt: Runtime, principal: Principal, environment_id: str, body: SubscriptionCreate
) -> SubscriptionOut:
    source_id, destination_id = str(body.source.id), str(body.destination.id)
    async with audited_write(rt.db, principal, "subscription-created") as (conn, event):
        environment = await environment_access(
            conn, principal, environment_id, Action.WRITE, what=_WHAT
        )
        env_id = environment.id
        event.details = {
            "environmentId": env_id,
            "sourceId": source_id,
            "destinationId": destination_id,
            "dataModel": body.data_model,
        }
        source = await sources.get_source(conn, source_id)
        dest_name = await destinations.name_in_environment(
            conn, destination_id=destination_id, environment_id=env_id
        )
        missing = [
            (field, f"no {what} with this id in this environment")
            for field, what, absent in (
                ("source.id", "source", source is None or source.environment_id != env_id),
                ("destination.id", "destination", dest_name is None),
            )
            if absent
        ]
        if missing:
            raise Invalid.many(missing)
        assert source is not None and dest_name is not None
        source_names, dest_names = {source_id: source.name}, {destination_id: dest_name}
        subscription_id = new_id()
        event.details["subscriptionId"] = subscription_id
        try:
            row = await store.insert(
                conn,
                subscription_id=subscription_id,
                environment_id=env_id,
                source_id=source_id,
                destination_id=destination_id,
                data_model=body.data_model,
                created_at=clock.now(),
            )
        except sa.exc.IntegrityError as exc:
            if is_unique_violation(exc):
                raise Conflict(
                    f"Source {source_id} is already subscribed to destination {destination_id} "
                    f"for {body.data_model}."
                ) from exc
            if is_foreign_key_violation(exc):
                raise Conflict(
                    "The source or the destination was deleted while subscribing; try again."
                ) from exc
            raise
    return _view(row, environment.flag, source_names, dest_names)


_NO_MATCH = ""


def _id_filter(given: str | None) -> str | None:
    """The stored form of an id filter; an id that is not a uuid names nothing (and never
    reaches a query), so it filters everything out, like an unknown one."""
    if given is None:
        return None
    return canonical_id(given) or _NO_MATCH


async def list_in_environment(
    rt: Runtime,
    principal: Principal,
    environment_id: str,
    *,
    source_id: str | None,
    destination_id: str | None,
    data_model: str | None,
    count: int,
    cursor: str | None,
) -> tuple[list[SubscriptionOut], str | None]:
    """One page in creation order, and the cursor of the next page if there is one."""
    after = decode_cursor(cursor, highest=store.MAX_SEQ) if cursor is not None else 0
    async with rt.db.read() as conn:
        environment = await environment_access(
            conn, principal, environment_id, Action.READ, what=_WHAT
        )
        source_key, destination_key = _id_filter(source_id), _id_filter(destination_id)
        if source_key == _NO_MATCH or destination_key == _NO_MATCH:
            return [], None
        rows = await store.page(
            conn,
            environment_ids=[environment.id],
            source_id=source_key,
            destination_id=destination_key,
            data_model=data_model,
            after=after,
            limit=count + 1,
        )
        shown = await _views(conn, rows[:count], {environment.id: environment.flag})
    next_cursor = encode_cursor(rows[count - 1].seq) if len(rows) > count else None
    return shown, next_cursor


async def list_in_organization(
    rt: Runtime, principal: Principal, organization_id: str
) -> list[SubscriptionOut]:
    """Every subscription in the environments where the caller holds a role."""
    environments = await organizations.list_environments(
        rt.db, principal=principal, organization_id=organization_id
    )
    flags = {e.id: e.flag for e in environments}
    if not flags:
        return []
    async with rt.db.read() as conn:
        rows = await store.page(conn, environment_ids=flags)
        return await _views(conn, rows, flags)


async def _access(
    conn: Connection, principal: Principal, subscription_id: str, action: Action
) -> Located:
    key = canonical_id(subscription_id)
    found = None
    if key is not None:
        found = await store.locate(
            conn,
            subscription_id=key,
            params=caller_params(principal),
            for_update=action is Action.WRITE,
        )
    require_environment_role(found.role if found else None, action, what=_WHAT)
    assert found is not None
    return found


async def get(rt: Runtime, principal: Principal, subscription_id: str) -> SubscriptionOut:
    async with rt.db.read() as conn:
        found = await _access(conn, principal, subscription_id, Action.READ)
        source_names, dest_names = await _names(conn, [found.row])
    return _view(found.row, found.flag, source_names, dest_names)


async def delete(rt: Runtime, principal: Principal, subscription_id: str) -> str:
    async with audited_write(rt.db, principal, "subscription-deleted") as (conn, event):
        event.details["subscriptionId"] = subscription_id
        row = (await _access(conn, principal, subscription_id, Action.WRITE)).row
        event.details.update(
            environmentId=row.environment_id,
            sourceId=row.source_id,
            destinationId=row.destination_id,
            dataModel=row.data_model,
        )
        await store.delete(conn, row)
    return f"Subscription {subscription_id} was deleted; nothing more is routed by it."
