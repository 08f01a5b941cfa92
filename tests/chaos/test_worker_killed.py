"""At least once, whatever happens: a delivery worker killed with SIGKILL again and again
while 2,000 messages go through loses none, and first deliveries come in send order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.delivery.support import Script, message, new_destination, new_source, scripted, subscribe
from tests.support import LOOPBACK, Server, server_for

MESSAGES = 2000
KILL_AFTER = (300, 800, 1300, 1700)  # first deliveries seen before each SIGKILL


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api_only(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from server_for(request, tmp_path_factory, "chaos", delivery_worker=False)


def _start_worker(server: Server) -> subprocess.Popen[bytes]:
    settings = server.settings
    env = {
        **os.environ,
        "WAYPOST_DATABASE_URL": settings.resolved_database_url(),
        "WAYPOST_SECRET_KEY": settings.secret_key,
        "WAYPOST_DATA_DIR": str(settings.data_dir),
        "WAYPOST_OUTBOUND_ALLOW": LOOPBACK,
        # A killed worker's claims come back after the lease: timeouts + 5 s.
        "WAYPOST_DELIVERY_TIMEOUT_SECONDS": "0.5",
        "WAYPOST_VERIFY_TIMEOUT_SECONDS": "0.5",
        "WAYPOST_RETRY_SCALE": "0.001",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "waypost.cli", "worker", "--concurrency", "20"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.timeout(600)
def test_sigkilled_workers_lose_nothing_and_keep_fifo_order(api_only: Server) -> None:
    org = api_only.new_org()
    script = Script()
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        worker = _start_worker(api_only)
        try:
            kills = list(KILL_AFTER)
            for n in range(MESSAGES):
                assert source.send(message(n, destination)).status_code == 200
                if kills and len(script.delivered) >= kills[0]:
                    kills.pop(0)
                    worker.send_signal(signal.SIGKILL)
                    assert worker.wait(timeout=10) == -signal.SIGKILL
                    worker = _start_worker(api_only)
            for threshold in kills:  # kills the sending outran
                script.wait_delivered(threshold, timeout=120)
                worker.send_signal(signal.SIGKILL)
                assert worker.wait(timeout=10) == -signal.SIGKILL
                worker = _start_worker(api_only)
            delivered = script.wait_delivered(MESSAGES, timeout=300, distinct=True)
        finally:
            worker.send_signal(signal.SIGTERM)
            # A worker stopped by SIGTERM finishes its sends and exits 0.
            assert worker.wait(timeout=30) == 0
    numbers = [body["n"] for body in delivered]
    assert sorted(set(numbers)) == list(range(MESSAGES))  # none lost
    firsts = list(dict.fromkeys(numbers))  # each message at its first delivery
    assert firsts == list(range(MESSAGES))  # in send order
    # Redeliveries happen only around a kill: at most one per kill (FIFO has one in flight).
    assert len(numbers) - MESSAGES <= len(KILL_AFTER)
