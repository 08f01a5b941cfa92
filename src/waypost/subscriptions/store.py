"""All of the subscriptions feature's SQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waypost.db import Connection, Prepared
from waypost.kinds import EnvironmentFlag, EnvRole
from waypost.organizations.service import with_environment
from waypost.subscriptions.tables import subscriptions

MAX_SEQ = 2**63 - 1  # the BIGINT seq on PostgreSQL


def data_model_key(data_model: str) -> str:
    """The form routing matches on: clients send both "Clinical Summary" and
    "ClinicalSummary" for one data model."""
    return data_model.replace(" ", "")


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    seq: int  # creation order, for listing and cursors
    id: str
    environment_id: str
    source_id: str
    destination_id: str
    data_model: str  # as given
    data_model_key: str  # as routing matches it (`data_model_key`)
    created_at: str


@dataclass(frozen=True, slots=True)
class Located:
    """A subscription found for a caller: its environment's flag, and the caller's role
    there (None: no role, so not visible)."""

    row: SubscriptionRow
    flag: EnvironmentFlag
    role: EnvRole | None


_COLUMNS = tuple(f.name for f in dataclasses.fields(SubscriptionRow))


def _row(values: Mapping[str, Any] | sa.RowMapping) -> SubscriptionRow:
    return SubscriptionRow(**{name: values[name] for name in _COLUMNS})


# One statement finds the subscription and the caller's role in its environment.
_by_id = with_environment(
    sa.select(subscriptions),
    subscriptions.c.environment_id,
    caller=True,
    of_caller_organization=True,
).where(subscriptions.c.id == sa.bindparam("subscription_id"))
_read_access = Prepared(_by_id)
_write_access = Prepared(_by_id.with_for_update(of=subscriptions))
_insert = Prepared(subscriptions.insert().returning(subscriptions.c.seq))
_delete = Prepared(subscriptions.delete().where(subscriptions.c.seq == sa.bindparam("row_seq")))
# Routing, on every send: served by the (source, data model key, destination) unique index.
_routes = Prepared(
    sa.select(subscriptions.c.destination_id)
    .where(
        subscriptions.c.source_id == sa.bindparam("source_id"),
        subscriptions.c.data_model_key == sa.bindparam("key"),
    )
    .order_by(subscriptions.c.seq)
)
# One lookup on the unique (source, data model key, destination) index.
_route = Prepared(
    sa.select(subscriptions.c.seq).where(
        subscriptions.c.source_id == sa.bindparam("source_id"),
        subscriptions.c.data_model_key == sa.bindparam("key"),
        subscriptions.c.destination_id == sa.bindparam("destination_id"),
    )
)


async def locate(
    conn: Connection, *, subscription_id: str, params: Mapping[str, Any], for_update: bool
) -> Located | None:
    """The subscription in the caller's organization, locked for a write if asked;
    `params` are the caller's (organizations' caller_params)."""
    query = _write_access if for_update else _read_access
    found = await conn.first(query, {**params, "subscription_id": subscription_id})
    if found is None:
        return None
    role = None if found["role"] is None else EnvRole(found["role"])
    return Located(_row(found), EnvironmentFlag(found["flag"]), role)


async def insert(
    conn: Connection,
    *,
    subscription_id: str,
    environment_id: str,
    source_id: str,
    destination_id: str,
    data_model: str,
    created_at: str,
) -> SubscriptionRow:
    values = {
        "id": subscription_id,
        "environment_id": environment_id,
        "source_id": source_id,
        "destination_id": destination_id,
        "data_model": data_model,
        "data_model_key": data_model_key(data_model),
        "created_at": created_at,
    }
    inserted = await conn.first(_insert, values)
    assert inserted is not None  # RETURNING always yields the new row
    return _row({**values, "seq": inserted["seq"]})


async def delete(conn: Connection, row: SubscriptionRow) -> None:
    await conn.run(_delete, {"row_seq": row.seq})


async def page(
    conn: Connection,
    *,
    environment_ids: Collection[str],
    source_id: str | None = None,
    destination_id: str | None = None,
    data_model: str | None = None,
    after: int = 0,
    limit: int | None = None,
) -> list[SubscriptionRow]:
    """Subscriptions in these environments, in creation order, after the seq `after`."""
    query = (
        sa.select(subscriptions)
        .where(subscriptions.c.environment_id.in_(list(environment_ids)))
        .where(subscriptions.c.seq > after)
        .order_by(subscriptions.c.seq)
    )
    if source_id is not None:
        query = query.where(subscriptions.c.source_id == source_id)
    if destination_id is not None:
        query = query.where(subscriptions.c.destination_id == destination_id)
    if data_model is not None:
        query = query.where(subscriptions.c.data_model_key == data_model_key(data_model))
    if limit is not None:
        query = query.limit(limit)
    return [_row(values) for values in (await conn.execute(query)).mappings()]


async def destination_ids(conn: Connection, *, source_id: str, data_model: str) -> list[str]:
    rows = await conn.all(_routes, {"source_id": source_id, "key": data_model_key(data_model)})
    return [row["destination_id"] for row in rows]


async def has_route(
    conn: Connection, *, source_id: str, data_model: str, destination_id: str
) -> bool:
    found = await conn.first(
        _route,
        {
            "source_id": source_id,
            "key": data_model_key(data_model),
            "destination_id": destination_id,
        },
    )
    return found is not None
