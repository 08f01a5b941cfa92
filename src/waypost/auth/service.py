"""API tokens: issued once in plaintext, stored only as hashes, revocable."""

from __future__ import annotations

import sqlalchemy as sa

from waypost.auth.tables import api_tokens
from waypost.crypto import hash_api_token, new_api_token
from waypost.db import Connection, Database, new_id, now
from waypost.organizations.tables import users


class UnknownError(LookupError):
    """An id given on the command line names nothing."""


async def issue_token(conn: Connection, user_id: str) -> tuple[str, str]:
    """Returns (token id, token). The token itself is never stored."""
    token = new_api_token()
    token_id = new_id()
    await conn.execute(
        api_tokens.insert().values(
            id=token_id, user_id=user_id, token_hash=hash_api_token(token), created_at=now()
        )
    )
    return token_id, token


async def create_token(db: Database, user_id: str) -> tuple[str, str]:
    async with db.write() as conn:
        exists = await conn.scalar(sa.select(users.c.id).where(users.c.id == user_id))
        if exists is None:
            raise UnknownError(f"no user with id {user_id}")
        return await issue_token(conn, user_id)


async def revoke_token(db: Database, token_id: str) -> None:
    async with db.write() as conn:
        result = await conn.execute(
            api_tokens.update()
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now())
        )
        if result.rowcount == 0:
            raise UnknownError(f"no active token with id {token_id}")
