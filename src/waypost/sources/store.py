"""Every statement about sources and their tokens, each answering typed rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waypost.db import Connection, Prepared
from waypost.organizations.service import with_environment
from waypost.sources.tables import source_tokens, sources

ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class SendingSource:
    """What the send API needs to know about the source behind a token."""

    id: str
    name: str
    environment_id: str
    environment_flag: str  # "Development" | "Staging" | "Production"
    organization_id: int


@dataclass(frozen=True, slots=True)
class SourceRow:
    seq: int
    id: str
    environment_id: str
    environment_flag: str
    organization_id: int
    name: str
    secret_hash: str | None
    secret_sealed: str | None
    previous_secret_hash: str | None
    previous_secret_sealed: str | None
    previous_secret_expires_at: str | None
    jwks_url: str | None
    jwk_set: dict[str, Any] | None
    created_at: str
    updated_at: str
    # The caller's role in the source's environment, when looked up for a caller.
    role: str | None = None

    @property
    def is_oauth_key(self) -> bool:
        return self.jwks_url is not None or self.jwk_set is not None

    @property
    def sending(self) -> SendingSource:
        return SendingSource(
            self.id, self.name, self.environment_id, self.environment_flag, self.organization_id
        )

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> SourceRow:
        return cls(
            seq=row["seq"],
            id=row["id"],
            environment_id=row["environment_id"],
            environment_flag=row["flag"],
            organization_id=row["organization_id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            secret_sealed=row["secret_sealed"],
            previous_secret_hash=row["previous_secret_hash"],
            previous_secret_sealed=row["previous_secret_sealed"],
            previous_secret_expires_at=row["previous_secret_expires_at"],
            jwks_url=row["jwks_url"],
            jwk_set=row["jwk_set"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            role=row.get("role"),
        )


_with_environment = with_environment(
    sa.select(sources), sources.c.environment_id, organization=True
)
_by_id = Prepared(_with_environment.where(sources.c.id == sa.bindparam("source_id")))
_for_caller = with_environment(
    sa.select(sources),
    sources.c.environment_id,
    organization=True,
    caller=True,
    of_caller_organization=True,
).where(sources.c.id == sa.bindparam("source_id"))
_read_for_caller = Prepared(_for_caller)
_write_for_caller = Prepared(_for_caller.with_for_update(of=sources))
_in_environment = _with_environment.where(
    sources.c.environment_id == sa.bindparam("environment_id")
).order_by(sources.c.seq)
_oauth_keys_in_environment = _in_environment.where(
    sa.or_(sources.c.jwks_url.is_not(None), sources.c.jwk_set.is_not(None))
)
_insert = Prepared(sources.insert())
# The SET clause comes from the parameters given, so one statement serves every update.
_update = sources.update().where(sources.c.seq == sa.bindparam("row_seq"))
_delete = Prepared(sources.delete().where(sources.c.seq == sa.bindparam("row_seq")))

_insert_token = Prepared(source_tokens.insert())
# The hot path of every send: one indexed lookup by the token's hash.
_sending_source = Prepared(
    with_environment(
        sa.select(sources.c.id, sources.c.name, sources.c.environment_id).select_from(
            source_tokens.join(sources, sources.c.id == source_tokens.c.source_id)
        ),
        sources.c.environment_id,
        organization=True,
    ).where(
        source_tokens.c.token_hash == sa.bindparam("token_hash"),
        source_tokens.c.kind == ACCESS,
        source_tokens.c.expires_at > sa.bindparam("now"),
    )
)
# Deleting is what makes a refresh token single-use: of two requests racing with the same
# token, only one deletes the row.
_take_refresh = Prepared(
    source_tokens.delete().where(
        source_tokens.c.token_hash == sa.bindparam("token_hash"),
        source_tokens.c.source_id == sa.bindparam("source_id"),
        source_tokens.c.kind == REFRESH,
        source_tokens.c.expires_at > sa.bindparam("now"),
    )
)
_forget_expired = Prepared(
    source_tokens.delete().where(
        source_tokens.c.source_id == sa.bindparam("source_id"),
        source_tokens.c.expires_at <= sa.bindparam("now"),
    )
)


async def source_by_id(conn: Connection, source_id: str) -> SourceRow | None:
    """`source_id` must be canonical (waypost.db.canonical_id)."""
    row = await conn.first(_by_id, {"source_id": source_id})
    return SourceRow.of(row) if row is not None else None


async def source_for_caller(
    conn: Connection, source_id: str, *, user_id: str, organization_id: int, for_update: bool
) -> SourceRow | None:
    """The source with the caller's role in its environment (`role` None: no role)."""
    query = _write_for_caller if for_update else _read_for_caller
    params = {"source_id": source_id, "user_id": user_id, "organization_id": organization_id}
    row = await conn.first(query, params)
    return SourceRow.of(row) if row is not None else None


async def sources_in_environment(
    conn: Connection, environment_id: str, *, oauth_keys_only: bool = False
) -> list[SourceRow]:
    query = _oauth_keys_in_environment if oauth_keys_only else _in_environment
    rows = (await conn.execute(query, {"environment_id": environment_id})).mappings().all()
    return [SourceRow.of(r) for r in rows]


async def insert_source(conn: Connection, values: Mapping[str, Any]) -> None:
    await conn.run(_insert, values)


async def update_source(conn: Connection, seq: int, changes: Mapping[str, Any]) -> None:
    await conn.execute(_update, {"row_seq": seq, **changes})


async def delete_source(conn: Connection, seq: int) -> None:
    """Its tokens go with it (ON DELETE CASCADE)."""
    await conn.run(_delete, {"row_seq": seq})


async def insert_token(
    conn: Connection, *, token_hash: str, source_id: str, kind: str, now: str, expires_at: str
) -> None:
    await conn.run(
        _insert_token,
        {
            "token_hash": token_hash,
            "source_id": source_id,
            "kind": kind,
            "created_at": now,
            "expires_at": expires_at,
        },
    )


async def take_refresh_token(
    conn: Connection, *, token_hash: str, source_id: str, now: str
) -> bool:
    """Uses up a live refresh token of this source; False when there is none."""
    params = {"token_hash": token_hash, "source_id": source_id, "now": now}
    return await conn.run(_take_refresh, params) == 1


async def forget_expired_tokens(conn: Connection, *, source_id: str, now: str) -> None:
    await conn.run(_forget_expired, {"source_id": source_id, "now": now})


async def sending_source(conn: Connection, *, token_hash: str, now: str) -> SendingSource | None:
    row = await conn.first(_sending_source, {"token_hash": token_hash, "now": now})
    if row is None:
        return None
    return SendingSource(
        row["id"], row["name"], row["environment_id"], row["flag"], row["organization_id"]
    )
