"""Every statement on the auth_credentials table, and the typed rows they return."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import JsonValue

from waypost.credentials.strategies import StrategyName
from waypost.credentials.tables import auth_credentials
from waypost.db import Connection, Prepared
from waypost.kinds import EnvironmentFlag
from waypost.organizations.service import with_environment


@dataclass(frozen=True, slots=True)
class CredentialRow:
    seq: int  # creation order, for listing
    id: str
    environment_id: str
    name: str
    auth_strategy: StrategyName
    settings: dict[str, JsonValue]  # the non-secret fields as given, under Redox's names
    secrets: dict[str, str]  # secret field -> ciphertext, bound to this row and field
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Located:
    """A credential found for a caller: its environment's flag, and the caller's role
    there (None: no role, so not visible)."""

    row: CredentialRow
    flag: EnvironmentFlag
    role: str | None


_COLUMNS = tuple(f.name for f in dataclasses.fields(CredentialRow))


def _row(values: Mapping[Any, Any]) -> CredentialRow:
    row = {name: values[name] for name in _COLUMNS}
    row["auth_strategy"] = StrategyName(row["auth_strategy"])
    return CredentialRow(**row)


# The one join beyond this feature's table: the environment's flag and the caller's role
# in it, so that one statement both finds the row and checks access.
_by_id_for_caller = with_environment(
    sa.select(auth_credentials),
    auth_credentials.c.environment_id,
    caller=True,
    of_caller_organization=True,
).where(auth_credentials.c.id == sa.bindparam("credential_id"))
_read_access = Prepared(_by_id_for_caller)
_write_access = Prepared(_by_id_for_caller.with_for_update(of=auth_credentials))
_by_id = Prepared(
    sa.select(auth_credentials).where(auth_credentials.c.id == sa.bindparam("credential_id"))
)
_in_environment = Prepared(
    sa.select(auth_credentials)
    .where(auth_credentials.c.environment_id == sa.bindparam("environment_id"))
    .order_by(auth_credentials.c.seq)
)
_insert = Prepared(auth_credentials.insert().returning(auth_credentials.c.seq))
# The SET clause comes from the parameters given, so one statement serves every update.
_update = Prepared(
    auth_credentials.update().where(auth_credentials.c.seq == sa.bindparam("row_seq"))
)
_delete = Prepared(
    auth_credentials.delete().where(auth_credentials.c.seq == sa.bindparam("row_seq"))
)
_all_sealed = Prepared(
    sa.select(
        auth_credentials.c.seq, auth_credentials.c.id, auth_credentials.c.secrets
    ).with_for_update()
)


async def locate(
    conn: Connection,
    *,
    credential_id: str,
    organization_id: int,
    user_id: str,
    for_update: bool,
) -> Located | None:
    """The credential in the caller's organization, locked for a write if asked."""
    found = await conn.first(
        _write_access if for_update else _read_access,
        {"credential_id": credential_id, "organization_id": organization_id, "user_id": user_id},
    )
    if found is None:
        return None
    return Located(_row(found), EnvironmentFlag(found["flag"]), found["role"])


async def by_id(conn: Connection, *, credential_id: str) -> CredentialRow | None:
    found = await conn.first(_by_id, {"credential_id": credential_id})
    return None if found is None else _row(found)


async def in_environment(conn: Connection, *, environment_id: str) -> list[CredentialRow]:
    found = await conn.all(_in_environment, {"environment_id": environment_id})
    return [_row(values) for values in found]


async def insert(conn: Connection, values: Mapping[str, Any]) -> CredentialRow:
    """Inserts a row of the given column values (all but `seq`) and returns it."""
    inserted = await conn.first(_insert, values)
    assert inserted is not None  # RETURNING always yields the new row
    return _row({**values, "seq": inserted["seq"]})


async def update(conn: Connection, row: CredentialRow, changes: Mapping[str, Any]) -> CredentialRow:
    """Writes the column changes; returns the row as it now stands."""
    if changes:
        await conn.run(_update, {"row_seq": row.seq, **changes})
    return dataclasses.replace(row, **changes)


async def delete(conn: Connection, row: CredentialRow) -> None:
    await conn.run(_delete, {"row_seq": row.seq})


async def all_sealed(conn: Connection) -> list[tuple[int, str, dict[str, str]]]:
    """(seq, id, sealed secrets) of every credential, locked."""
    found = await conn.all(_all_sealed, {})
    return [(values["seq"], values["id"], dict(values["secrets"])) for values in found]


async def set_secrets(conn: Connection, *, seq: int, secrets: Mapping[str, str]) -> None:
    await conn.run(_update, {"row_seq": seq, "secrets": dict(secrets)})
