"""At least once, whatever happens: a delivery worker killed with SIGKILL again and again
while 2,000 messages go through loses none, and first deliveries come in send order."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.chaos.workers import start_worker
from tests.delivery.support import Script, message, new_destination, new_source, scripted, subscribe
from tests.support import Server, server_for

MESSAGES = 2000
KILL_AFTER = (300, 800, 1300, 1700)  # first deliveries seen before each SIGKILL


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api_only(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from server_for(request, tmp_path_factory, "chaos", delivery_worker=False)


@pytest.mark.timeout(600)
def test_sigkilled_workers_lose_nothing_and_keep_fifo_order(api_only: Server) -> None:
    org = api_only.new_org()
    script = Script()
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        worker = start_worker(api_only, delivery_timeout_seconds=0.5)
        try:
            kills = list(KILL_AFTER)
            for n in range(MESSAGES):
                assert source.send(message(n, destination)).status_code == 200
                if kills and len(script.delivered) >= kills[0]:
                    kills.pop(0)
                    worker.send_signal(signal.SIGKILL)
                    assert worker.wait(timeout=10) == -signal.SIGKILL
                    worker = start_worker(api_only, delivery_timeout_seconds=0.5)
            for threshold in kills:  # kills the sending outran
                script.wait_delivered(threshold, timeout=120)
                worker.send_signal(signal.SIGKILL)
                assert worker.wait(timeout=10) == -signal.SIGKILL
                worker = start_worker(api_only, delivery_timeout_seconds=0.5)
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
