"""Every API test runs twice: on embedded SQLite and on PostgreSQL.

PostgreSQL comes from WAYPOST_TEST_POSTGRES_URL, else 127.0.0.1:5432 (database `test`),
else a private throwaway cluster when its binaries are installed. Otherwise the
PostgreSQL runs are skipped with a warning, or fail when WAYPOST_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Org, PrivateCluster, Server, find_postgres, scratch_postgres_database
from tests.support import start_server as _start_server


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
    data_dir: Path = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        running = _start_server("sqlite", f"sqlite:///{data_dir / 'waypost.db'}", data_dir)
        yield running
        running.stop()
        return
    server_url = request.getfixturevalue("postgres_server_url")
    with scratch_postgres_database(server_url) as url:
        running = _start_server("postgres", url, data_dir)
        yield running
        running.stop()


@pytest.fixture
def org(server: Server) -> Org:
    return server.new_org()


@pytest.fixture
def other_org(server: Server) -> Org:
    return server.new_org("Other")
