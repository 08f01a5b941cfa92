"""What a running process holds: settings, database, secrets, outbound HTTP, and the
access tokens of auth credentials. The API, the command line and the delivery worker
build it the same way, with `open_runtime`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.requests import Request

from waypost.crypto import SecretBox, load_or_create_key_file
from waypost.db import Database
from waypost.jwks_cache import JwksCache
from waypost.outbound import OutboundClient, parse_allow_list
from waypost.settings import Settings
from waypost.token_cache import TokenCache

log = logging.getLogger("waypost")


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    db: Database
    secret_box: SecretBox
    outbound: OutboundClient
    # One per process: every destination that uses a credential shares its token.
    tokens: TokenCache = field(default_factory=TokenCache)
    # Rung when new work is committed, so this process's delivery worker claims it at
    # once (workers in other processes hear PostgreSQL's NOTIFY instead).
    delivery_wake: asyncio.Event = field(default_factory=asyncio.Event)
    # One per process: the key sets sources publish at a JWKS URL.
    jwks: JwksCache = field(default_factory=JwksCache)


def secret_box(settings: Settings) -> SecretBox:
    """The key from the setting; the embedded SQLite set-up generates one on first run."""
    if settings.secret_key:
        return SecretBox.from_setting(settings.secret_key)
    if settings.database_url and not settings.database_url.startswith("sqlite"):
        raise ValueError("WAYPOST_SECRET_KEY is required when WAYPOST_DATABASE_URL is not SQLite")
    return SecretBox.from_setting(load_or_create_key_file(settings.data_dir / "secret.key"))


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, box: SecretBox | None = None, pool_size: int | None = None
) -> AsyncIterator[Runtime]:
    """Opens the database and the outbound client, and closes them again. `box` is for a
    caller that has checked the key already; `pool_size` overrides the setting (the
    command line needs few connections)."""
    box = box or secret_box(settings)
    allow = parse_allow_list(settings.outbound_allow)
    if allow:
        log.warning(
            "outbound guard: WAYPOST_OUTBOUND_ALLOW lets requests reach %s; unset it in production",
            ", ".join(str(n) for n in allow),
        )
    db = Database(settings.resolved_database_url(), pool_size=pool_size or settings.db_pool_size)
    outbound = OutboundClient(allow, settings.ca_bundle)
    try:
        yield Runtime(settings=settings, db=db, secret_box=box, outbound=outbound)
    finally:
        await outbound.close()
        await db.close()


def runtime(request: Request) -> Runtime:
    # A plain call rather than a FastAPI dependency: dependencies cost on every request.
    rt: Runtime = request.app.state.runtime
    return rt
