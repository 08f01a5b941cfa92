"""What a running process holds: settings, database, secrets, outbound HTTP, and the
access tokens of auth credentials. The API, the command line and the delivery worker
build it the same way, with `open_runtime`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import Request

from waypost.crypto import SecretBox, load_or_create_key_file
from waypost.db import Database
from waypost.outbound import OutboundClient, parse_allow_list
from waypost.runtime.jwks_cache import JwksCache
from waypost.runtime.token_cache import SharedTokens, TokenCache
from waypost.settings import Settings

log = logging.getLogger("waypost")


class Runtime:
    """The secret box and the outbound client are built on first use unless given, so a
    command that never opens a secret never needs the key, and one that never sends never
    reads the CA bundle."""

    __slots__ = (
        "_outbound",
        "_secret_box",
        "db",
        "delivery_wake",
        "jwks",
        "settings",
        "tokens",
    )

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        secret_box: SecretBox | None = None,
        outbound: OutboundClient | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._secret_box = secret_box
        self._outbound = outbound
        # Every destination that uses a credential shares its token, and so does every
        # process: the token is kept in the database too, sealed with the secret key.
        self.tokens = TokenCache(SharedTokens(db, lambda: self.secret_box))
        # Rung when new work is committed, so this process's delivery worker claims it at
        # once (workers in other processes hear PostgreSQL's NOTIFY instead).
        self.delivery_wake = asyncio.Event()
        # One per process: the key sets sources publish at a JWKS URL.
        self.jwks = JwksCache()

    @property
    def secret_box(self) -> SecretBox:
        if self._secret_box is None:
            self._secret_box = secret_box(self.settings)
        return self._secret_box

    @property
    def outbound(self) -> OutboundClient:
        if self._outbound is None:
            self._outbound = outbound_client(self.settings)
        return self._outbound

    async def close(self) -> None:
        """Closes the outbound client, if one was built, and the database."""
        if self._outbound is not None:
            await self._outbound.close()
        await self.db.close()


def secret_box(settings: Settings) -> SecretBox:
    """The key from the setting; the embedded SQLite set-up generates one on first run."""
    if settings.secret_key:
        return SecretBox.from_setting(settings.secret_key)
    if settings.database_url and not settings.database_url.startswith("sqlite"):
        raise ValueError("WAYPOST_SECRET_KEY is required when WAYPOST_DATABASE_URL is not SQLite")
    return SecretBox.from_setting(load_or_create_key_file(settings.data_dir / "secret.key"))


def outbound_client(settings: Settings) -> OutboundClient:
    """The client behind the SSRF guard; warns when the setting lets requests through it."""
    allow = parse_allow_list(settings.outbound_allow)
    if allow:
        log.warning(
            "outbound guard: WAYPOST_OUTBOUND_ALLOW lets requests reach %s; unset it in production",
            ", ".join(str(n) for n in allow),
        )
    return OutboundClient(allow, settings.ca_bundle)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    box: SecretBox | None = None,
    pool_size: int | None = None,
    on_first_use: bool = False,
) -> AsyncIterator[Runtime]:
    """Opens the database and, unless `on_first_use`, the secret box and the outbound
    client, so that a missing key or a bad CA bundle stops a server or a worker at
    start-up; closes them again. `box` is for a caller that has checked the key already;
    `pool_size` overrides the setting (the command line needs few connections); the
    command line takes `on_first_use`, as most of its commands neither open a secret nor
    send."""
    outbound = None
    if not on_first_use:
        box = box or secret_box(settings)
        outbound = outbound_client(settings)
    db = Database(settings.resolved_database_url(), pool_size=pool_size or settings.db_pool_size)
    rt = Runtime(settings=settings, db=db, secret_box=box, outbound=outbound)
    try:
        yield rt
    finally:
        await rt.close()


def runtime(request: Request) -> Runtime:
    # A plain call rather than a FastAPI dependency: dependencies cost on every request.
    rt: Runtime = request.app.state.runtime
    return rt
