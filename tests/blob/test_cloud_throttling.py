"""A storage account that throttles: `503 ServerBusy` is recorded in those words and its
Retry-After is honoured. Azurite never throttles, so a loopback server answers as Azure
does (the status, the x-ms-error-code header and the XML error body)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.blob.support import cloud_destination, send_ok, shared_key, wait_for_attempts
from tests.delivery.support import message, new_source, subscribe, wait_log
from tests.receivers import Receiver, Reply, Seen
from tests.support import Server, server_for

SERVER_BUSY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>The server is currently unable to receive requests.</Message></Error>"
)


class BusyAccount:
    """Answers the first Put Blob with 503 ServerBusy and Retry-After, then 201."""

    def __init__(self, retry_after: str) -> None:
        self.retry_after = retry_after
        self.puts: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def __call__(self, seen: Seen) -> Reply:
        with self.lock:
            self.puts.append((seen.path, time.monotonic()))
            first = len(self.puts) == 1
        if first:
            return Reply(
                503,
                SERVER_BUSY,
                {
                    "Content-Type": "application/xml",
                    "x-ms-error-code": "ServerBusy",
                    "Retry-After": self.retry_after,
                },
            )
        return Reply(201, b"", {"ETag": '"0x1"', "Last-Modified": "Mon, 30 Nov 2026 07:00:00 GMT"})


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[Receiver, BusyAccount]]:
    busy = BusyAccount(retry_after="1500")
    receiver = Receiver(busy)
    try:
        yield receiver, busy
    finally:
        receiver.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def throttled(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    account: tuple[Receiver, BusyAccount],
) -> Iterator[Server]:
    receiver, _ = account
    yield from server_for(
        request,
        tmp_path_factory,
        "throttled",
        azure_blob_endpoint=receiver.url.rstrip("/") + "/{account}",
        retry_scale=0.001,
    )


def test_server_busy_is_recorded_and_its_retry_after_honoured(
    throttled: Server, account: tuple[Receiver, BusyAccount]
) -> None:
    _, busy = account
    busy.puts.clear()
    org = throttled.new_org()
    destination = cloud_destination(org, "files", shared_key(org))
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_id = send_ok(source, message(0))

    first = wait_for_attempts(org, log_id, 1)["attempts"]["latest"]
    assert first["status"] == "failed"
    assert first["httpStatus"] == 503
    assert first["error"].startswith("503 ServerBusy: the storage account is throttling")
    wait_log(org, log_id, "succeeded")
    # 1,500 s scaled by the test server's 0.001: the retry came 1.5 s later, where the
    # unordered schedule alone would retry after 5 ms.
    (_, at_first), (path, at_second) = busy.puts
    assert at_second - at_first >= 1.4
    assert path.startswith("/devstoreaccount1/files/waypost/PatientAdmin/")
    assert path.endswith(f"/{log_id}.json")
