"""The OpenAPI conformance run of tests/test_openapi.py, on PostgreSQL: a file of its own,
so that pytest-xdist (which spreads whole files) runs it beside the SQLite run."""

from __future__ import annotations

import pytest

from tests.support import Org, Server
from tests.test_openapi import check_conformance


@pytest.mark.parametrize("server", ["postgres"], indirect=True)
def test_every_operation_conforms_to_the_openapi_document(
    server: Server, org: Org, subtests: pytest.Subtests
) -> None:
    check_conformance(server, org, subtests)
