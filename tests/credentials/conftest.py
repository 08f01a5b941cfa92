"""Fixtures: a loopback token server, and a runtime for calling the service directly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.credentials.token_server import TokenServer
from tests.support import LOOPBACK, Server
from waypost.crypto import SecretBox
from waypost.db import Database
from waypost.outbound import OutboundClient, parse_allow_list
from waypost.runtime import Runtime


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with TokenServer() as running:
        yield running


@pytest.fixture
async def rt(server: Server) -> AsyncIterator[Runtime]:
    """What a delivery worker holds: the server's database and key, in this test's loop."""
    settings = server.settings
    db = Database(settings.resolved_database_url(), pool_size=2)
    outbound = OutboundClient(parse_allow_list(LOOPBACK))
    try:
        yield Runtime(
            settings=settings,
            db=db,
            secret_box=SecretBox.from_setting(settings.secret_key),
            outbound=outbound,
        )
    finally:
        await outbound.close()
        await db.close()
