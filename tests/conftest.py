"""Every API test runs twice: on embedded SQLite and on PostgreSQL, except those marked
`backend_free` (rules checked before the database is reached), which run on SQLite only.

PostgreSQL comes from WAYPOST_TEST_POSTGRES_URL, else 127.0.0.1:5432 (database `test`),
else a private throwaway cluster when its binaries are installed. Otherwise the
PostgreSQL runs are skipped with a warning, or fail when WAYPOST_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest

from tests.support import Org, PrivateCluster, Server, find_postgres, server_for


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    url, cluster, how = find_postgres()
    if url is None:
        if os.environ.get("WAYPOST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"WAYPOST_REQUIRE_POSTGRES=1 but PostgreSQL is unavailable: {how}")
        warnings.warn(f"PostgreSQL tests skipped: {how}", stacklevel=1)
        pytest.skip(f"PostgreSQL unavailable: {how}")
    try:
        yield url
    finally:
        if isinstance(cluster, PrivateCluster):
            cluster.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from server_for(request, tmp_path_factory, "shared")


@pytest.fixture
def org(server: Server) -> Org:
    return server.new_org()


@pytest.fixture
def other_org(server: Server) -> Org:
    return server.new_org("Other")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A backend-free rule (request validation that never reaches the database) runs once:
    its PostgreSQL run could only repeat the SQLite one."""
    kept: list[pytest.Item] = []
    repeated: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("server") if callspec is not None else None
        if backend == "postgres" and item.get_closest_marker("backend_free") is not None:
            repeated.append(item)
        else:
            kept.append(item)
    if repeated:
        config.hook.pytest_deselected(items=repeated)
        items[:] = kept
