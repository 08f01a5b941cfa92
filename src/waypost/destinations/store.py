"""Every statement on the destinations table, and the typed rows they return."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import JsonValue

from waypost.auth.callers import Lookup, by_token
from waypost.db import Connection, Prepared
from waypost.destinations.delivery_settings import DeliverySettings, effective
from waypost.destinations.tables import destinations
from waypost.kinds import EnvironmentFlag
from waypost.organizations.service import with_environment


@dataclass(frozen=True, slots=True)
class DestinationRow:
    seq: int  # creation order, for listing and cursors
    id: str
    environment_id: str
    name: str
    endpoint: str | None
    cloud_provider_settings: dict[str, JsonValue] | None
    setup_state: dict[str, JsonValue] | None
    auth_credential_id: str | None
    verification_token: str | None  # sealed (waypost.crypto), never the plaintext
    verification_method: Literal["GET", "POST"] | None
    verified: bool
    verification_status: Literal["verified", "failed"] | None
    verification_checked_at: str | None
    verification_error: str | None
    delivery: dict[str, JsonValue] | None  # the keys the client gave, under wire names
    created_at: str
    updated_at: str

    @property
    def is_cloud(self) -> bool:
        return self.cloud_provider_settings is not None

    def delivery_settings(self) -> DeliverySettings:
        return effective(self.delivery, cloud=self.is_cloud)


@dataclass(frozen=True, slots=True)
class Located:
    """A destination found for a caller: its environment's flag, and the caller's role
    there (None: no role, so not visible)."""

    row: DestinationRow
    flag: EnvironmentFlag
    role: str | None


@dataclass(frozen=True, slots=True)
class Target:
    """A destination with its environment's flag, for a sender."""

    row: DestinationRow
    flag: EnvironmentFlag


_COLUMNS = tuple(f.name for f in dataclasses.fields(DestinationRow))


def _row(values: Mapping[str, Any]) -> DestinationRow:
    return DestinationRow(**{name: values[name] for name in _COLUMNS})


# The one join beyond this feature's table: the environment's flag and the caller's role
# in it, so that one statement both finds the row and checks access.
_by_id = with_environment(
    sa.select(destinations),
    destinations.c.environment_id,
    caller=True,
    of_caller_organization=True,
).where(destinations.c.id == sa.bindparam("destination_id"))
_read_access = Prepared(_by_id)
# The same for the user behind the request's bearer token (auth's `callers`): one
# statement authenticates, finds the row and checks access.
_read_access_by_token = Prepared(
    by_token(
        lambda user: with_environment(
            sa.select(destinations),
            destinations.c.environment_id,
            caller=True,
            of_caller_organization=True,
            caller_user=user,
        ).where(destinations.c.id == sa.bindparam("destination_id"))
    )
)
_write_access = Prepared(_by_id.with_for_update(of=destinations))
_target = Prepared(
    with_environment(sa.select(destinations), destinations.c.environment_id).where(
        destinations.c.id == sa.bindparam("destination_id")
    )
)
# For the send API, inside the transaction that queues: only the columns routing needs,
# and the row stays as read (a concurrent PATCH or verify waits) until that transaction
# ends.
_recipient = Prepared(
    sa.select(
        destinations.c.id,
        destinations.c.name,
        destinations.c.environment_id,
        destinations.c.endpoint,
        destinations.c.verified,
        destinations.c.auth_credential_id,
        # Compared in Python: the JSON column stores a Python None as JSON null.
        destinations.c.cloud_provider_settings,
        destinations.c.delivery,
    )
    .where(destinations.c.id == sa.bindparam("destination_id"))
    .with_for_update(read=True)
)
_insert = Prepared(destinations.insert().returning(destinations.c.seq))
_page = Prepared(
    sa.select(destinations)
    .where(
        destinations.c.environment_id == sa.bindparam("environment_id"),
        destinations.c.seq > sa.bindparam("after"),
    )
    .order_by(destinations.c.seq)
    .limit(sa.bindparam("limit"))
)
# The SET clause comes from the parameters given, so one statement serves every update.
_update = Prepared(destinations.update().where(destinations.c.seq == sa.bindparam("row_seq")))
_record_verification = Prepared(
    destinations.update().where(
        destinations.c.seq == sa.bindparam("row_seq"),
        # Both null on a cloud destination.
        destinations.c.endpoint.is_not_distinct_from(sa.bindparam("checked_endpoint")),
        destinations.c.verification_token.is_not_distinct_from(sa.bindparam("checked_token")),
    )
)
_delete = Prepared(destinations.delete().where(destinations.c.seq == sa.bindparam("row_seq")))
_using_credential = Prepared(
    sa.select(destinations.c.id, destinations.c.name)
    .where(destinations.c.auth_credential_id == sa.bindparam("credential_id"))
    .order_by(destinations.c.seq)
)
_sealed_tokens = Prepared(
    sa.select(destinations.c.seq, destinations.c.id, destinations.c.verification_token)
    .where(destinations.c.verification_token.is_not(None))
    .with_for_update()
)


async def locate(
    conn: Connection,
    *,
    destination_id: str,
    organization_id: int,
    user_id: str,
    for_update: bool,
) -> Located | None:
    """The destination in the caller's organization, locked for a write if asked."""
    found = await conn.first(
        _write_access if for_update else _read_access,
        {"destination_id": destination_id, "organization_id": organization_id, "user_id": user_id},
    )
    if found is None:
        return None
    return Located(_row(found), EnvironmentFlag(found["flag"]), found["role"])


async def locate_by_token(
    conn: Connection, lookup: Lookup, *, destination_id: str
) -> tuple[Located | None, Mapping[str, Any] | None]:
    """`locate` for a read, with the token's lookup: the destination (None without a role
    there), and the row for `Lookup.settle` (None: no such destination, or no live token)."""
    found = await conn.first(
        _read_access_by_token, {**lookup.parameters, "destination_id": destination_id}
    )
    if found is None:
        return None, None
    return Located(_row(found), EnvironmentFlag(found["flag"]), found["role"]), found


@dataclass(frozen=True, slots=True)
class RecipientRow:
    id: str
    name: str
    environment_id: str
    endpoint: str | None
    verified: bool
    auth_credential_id: str | None
    cloud_provider_settings: dict[str, JsonValue] | None
    delivery: dict[str, JsonValue] | None

    @property
    def cloud(self) -> bool:
        return self.cloud_provider_settings is not None

    def delivery_settings(self) -> DeliverySettings:
        return effective(self.delivery, cloud=self.cloud)


async def recipient(conn: Connection, *, destination_id: str) -> RecipientRow | None:
    found = await conn.first(_recipient, {"destination_id": destination_id})
    return None if found is None else RecipientRow(**found)


async def target(conn: Connection, *, destination_id: str) -> Target | None:
    found = await conn.first(_target, {"destination_id": destination_id})
    return None if found is None else Target(_row(found), EnvironmentFlag(found["flag"]))


async def insert(conn: Connection, values: Mapping[str, Any]) -> DestinationRow:
    """Inserts a row of the given column values (all but `seq`) and returns it."""
    inserted = await conn.first(_insert, values)
    assert inserted is not None  # RETURNING always yields the new row
    return _row({**values, "seq": inserted["seq"]})


async def page(
    conn: Connection, *, environment_id: str, after: int, limit: int
) -> list[DestinationRow]:
    found = await conn.all(
        _page, {"environment_id": environment_id, "after": after, "limit": limit}
    )
    return [_row(values) for values in found]


async def update(
    conn: Connection, row: DestinationRow, changes: Mapping[str, Any]
) -> DestinationRow:
    """Writes the column changes; returns the row as it now stands."""
    if changes:
        await conn.run(_update, {"row_seq": row.seq, **changes})
    return dataclasses.replace(row, **changes)


async def record_verification(
    conn: Connection, row: DestinationRow, outcome: Mapping[str, Any]
) -> DestinationRow | None:
    """Writes a handshake's outcome, unless the endpoint or token it checked have changed
    since (then None)."""
    recorded = await conn.run(
        _record_verification,
        {
            "row_seq": row.seq,
            "checked_endpoint": row.endpoint,
            "checked_token": row.verification_token,
            **outcome,
        },
    )
    return dataclasses.replace(row, **outcome) if recorded else None


async def delete(conn: Connection, row: DestinationRow) -> None:
    await conn.run(_delete, {"row_seq": row.seq})


async def using_credential(conn: Connection, *, credential_id: str) -> list[tuple[str, str]]:
    """(id, name) of the destinations that send with this auth credential."""
    found = await conn.all(_using_credential, {"credential_id": credential_id})
    return [(values["id"], values["name"]) for values in found]


async def sealed_tokens(conn: Connection) -> list[tuple[int, str, str]]:
    """(seq, id, sealed token) of every destination with a verification token, locked."""
    found = await conn.all(_sealed_tokens, {})
    return [(values["seq"], values["id"], values["verification_token"]) for values in found]


async def set_token(conn: Connection, *, seq: int, sealed: str) -> None:
    await conn.run(_update, {"row_seq": seq, "verification_token": sealed})
