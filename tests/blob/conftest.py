from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.azurite import Azurite, running_azurite
from tests.support import Org, Server, server_for


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with running_azurite(tmp_path_factory.mktemp("azurite")) as emulator:
        yield emulator


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, azurite: Azurite
) -> Iterator[Server]:
    """A server whose storage accounts are Azurite's, retrying a thousand times sooner."""
    yield from server_for(
        request,
        tmp_path_factory,
        "cloud",
        azure_blob_endpoint=azurite.endpoint_template,
        retry_scale=0.001,
        delivery_timeout_seconds=5.0,
    )


@pytest.fixture
def org(cloud: Server) -> Org:
    return cloud.new_org()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
