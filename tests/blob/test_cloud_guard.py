"""The outbound guard holds for the Azure SDK too: a storage endpoint on a private address
is refused before anything is sent, and an account name that does not resolve says so."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.azurite import Azurite
from tests.blob.support import (
    blobs,
    cloud_destination,
    new_container,
    send_ok,
    shared_key,
    wait_for_attempts,
)
from tests.delivery.support import BASE, message, new_source, subscribe
from tests.support import Org, Server, server_for

REFUSED = "refused by the outbound guard"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def guarded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, azurite: Azurite
) -> Iterator[Server]:
    """Azurite's endpoint (127.0.0.1, an IP literal), with no private address allowed."""
    yield from server_for(
        request,
        tmp_path_factory,
        "guarded",
        azure_blob_endpoint=azurite.endpoint_template,
        outbound_allow="",
        retry_scale=0.001,
        delivery_timeout_seconds=5.0,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def guarded_by_name(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, azurite: Azurite
) -> Iterator[Server]:
    """The account name is the host: `localhost` resolves to loopback, which the guard's
    resolver must refuse (a name, not a literal, so the check runs inside aiohttp)."""
    yield from server_for(
        request,
        tmp_path_factory,
        "guarded-name",
        azure_blob_endpoint=f"http://{{account}}:{azurite.port}/devstoreaccount1",
        outbound_allow="",
        retry_scale=0.001,
        delivery_timeout_seconds=5.0,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def azure_named(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Real Azure's endpoint template: the account name is a DNS name."""
    yield from server_for(
        request,
        tmp_path_factory,
        "azure-named",
        azure_blob_endpoint="https://{account}.blob.core.windows.net",
        retry_scale=0.001,
        delivery_timeout_seconds=5.0,
    )


def first_attempt(org: Org, destination_id: str) -> dict[str, object]:
    source = new_source(org)
    subscribe(org, source, destination_id)
    log_id = send_ok(source, message(1))
    latest: dict[str, object] = wait_for_attempts(org, log_id, 1)["attempts"]["latest"]
    return latest


def test_a_storage_endpoint_on_a_loopback_ip_is_refused(guarded: Server, azurite: Azurite) -> None:
    org = guarded.new_org()
    container = new_container(azurite)
    destination = cloud_destination(org, container.container_name, shared_key(org))
    latest = first_attempt(org, destination["id"])
    assert latest["status"] == "failed"
    assert latest["httpStatus"] is None
    error = str(latest["error"])
    assert error.startswith(REFUSED), error
    assert "127.0.0.1 is a loopback address" in error
    assert blobs(container) == {}

    # The verify probe goes the same way: nothing written, the refusal as the reason.
    answer = org.client().post(f"{BASE}/destinations/{destination['id']}/verify")
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["errors"]
    assert problem["field"] == "cloudProviderSettings"
    assert problem["message"] == f"verification failed: {error}"
    assert blobs(container) == {}


def test_an_account_name_resolving_to_loopback_is_refused(
    guarded_by_name: Server, azurite: Azurite
) -> None:
    org = guarded_by_name.new_org()
    container = new_container(azurite)
    destination = cloud_destination(
        org, container.container_name, shared_key(org), account="localhost"
    )
    latest = first_attempt(org, destination["id"])
    assert latest["status"] == "failed"
    error = str(latest["error"])
    assert error.startswith(REFUSED), error
    assert "localhost resolves to" in error
    assert blobs(container) == {}


def test_an_account_name_that_does_not_resolve_says_so(azure_named: Server) -> None:
    org = azure_named.new_org()
    account = f"wp{uuid.uuid4().hex[:20]}"
    destination = cloud_destination(org, "lakehouse", shared_key(org), account=account)
    latest = first_attempt(org, destination["id"])
    assert latest["status"] == "failed"
    assert latest["httpStatus"] is None
    assert latest["error"] == (
        f"account name does not resolve: {account} (https://{account}.blob.core.windows.net)"
    )
