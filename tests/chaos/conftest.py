"""Long runs that kill processes: `make chaos` runs them (CI too); `make test` skips them."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("WAYPOST_CHAOS") == "1":
        return
    skip = pytest.mark.skip(reason="a chaos run: `make chaos` runs it")
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(skip)
