"""All of ingest's SQL: the first answer to each Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from waypost.db import Connection, Prepared
from waypost.ingest.tables import idempotency_keys


@dataclass(frozen=True, slots=True)
class Remembered:
    body_hash: str
    answer: str
    created_at: str


_find = Prepared(
    sa.select(
        idempotency_keys.c.body_hash, idempotency_keys.c.answer, idempotency_keys.c.created_at
    ).where(
        idempotency_keys.c.source_id == sa.bindparam("source_id"),
        idempotency_keys.c.key == sa.bindparam("key"),
    )
)
_forget_older = Prepared(
    idempotency_keys.delete().where(
        idempotency_keys.c.source_id == sa.bindparam("source_id"),
        idempotency_keys.c.key == sa.bindparam("key"),
        idempotency_keys.c.created_at < sa.bindparam("before"),
    )
)
_remember = Prepared(idempotency_keys.insert())


async def find(conn: Connection, *, source_id: str, key: str) -> Remembered | None:
    row = await conn.first(_find, {"source_id": source_id, "key": key})
    return None if row is None else Remembered(**row)


async def remember(
    conn: Connection,
    *,
    source_id: str,
    key: str,
    body_hash: str,
    answer: str,
    at: str,
    expired_before: str,
) -> None:
    """Keeps the answer; raises IntegrityError when a live answer for the key exists."""
    await conn.run(_forget_older, {"source_id": source_id, "key": key, "before": expired_before})
    await conn.run(
        _remember,
        {
            "source_id": source_id,
            "key": key,
            "body_hash": body_hash,
            "answer": answer,
            "created_at": at,
        },
    )
