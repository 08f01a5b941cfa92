from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.support import Org, Server, server_for


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def delivering(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose retries come a thousand times sooner than in production. A
    receiver's failures are outcomes the worker records; the worker itself logs an error
    only when something went wrong in Waypost (a claim round or a task that failed), and
    none may, whatever the tests of a module did."""
    errors = _Errors()
    worker_log = logging.getLogger("waypost.delivery")
    worker_log.addHandler(errors)
    try:
        yield from server_for(
            request,
            tmp_path_factory,
            "delivery",
            retry_scale=0.001,
            delivery_timeout_seconds=2.0,
            max_message_bytes=2 * 1024 * 1024,
        )
    finally:
        worker_log.removeHandler(errors)
    assert not errors.seen, "the delivery worker logged errors:\n" + "\n".join(errors.seen)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(self.format(record))


@pytest.fixture
def org(delivering: Server) -> Org:
    return delivering.new_org()


@pytest.fixture
def other_org(delivering: Server) -> Org:
    return delivering.new_org("Other")
