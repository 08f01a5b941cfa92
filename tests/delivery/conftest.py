from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Org, Server, server_for


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def delivering(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose retries come a thousand times sooner than in production."""
    yield from server_for(
        request,
        tmp_path_factory,
        "delivery",
        retry_scale=0.001,
        delivery_timeout_seconds=2.0,
        max_message_bytes=2 * 1024 * 1024,
    )


@pytest.fixture
def org(delivering: Server) -> Org:
    return delivering.new_org()


@pytest.fixture
def other_org(delivering: Server) -> Org:
    return delivering.new_org("Other")
