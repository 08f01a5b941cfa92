"""Exactly one blob per message, whatever happens: a delivery worker writing to a cloud
destination (Azurite, unordered, 16 at a time) is killed with SIGKILL three times while
500 messages go through; a fresh worker drains the rest. Every log succeeds, each has its
one blob, and no blob is ever written twice: Azurite's access log shows one successful
PUT per blob, so a retry of a write whose acknowledgement was lost found the blob there
(409 BlobAlreadyExists) instead of overwriting it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.azurite import ACCOUNT, Azurite, running_azurite
from tests.blob.support import blobs, cloud_destination, new_container, send_ok, shared_key
from tests.chaos.workers import start_worker, worker_output
from tests.delivery.support import message, new_source, subscribe, wait_log
from tests.support import Server, server_for

MESSAGES = 500
KILL_AFTER = (100, 250, 400)  # blobs written before each SIGKILL


@dataclass(frozen=True)
class Emulator:
    azurite: Azurite
    access_log: Path  # Azurite's console output: one line per request it answered

    def blob_puts(self, container: str) -> list[tuple[str, int]]:
        """(blob name, status) of every PUT of a blob in the container, in order."""
        pattern = re.compile(
            rf'"PUT /{ACCOUNT}/{re.escape(container)}/([^? ]+)(?:\?[^ ]*)? HTTP/[\d.]+" (\d{{3}})'
        )
        text = self.access_log.read_text(errors="replace")
        return [(unquote(m[1]), int(m[2])) for m in pattern.finditer(text)]

    def written(self, container: str) -> int:
        return sum(1 for _name, status in self.blob_puts(container) if status == 201)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    workdir = tmp_path_factory.mktemp("azurite-chaos")
    with running_azurite(workdir) as azurite:
        yield Emulator(azurite, workdir / "azurite.out")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api_only(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, emulator: Emulator
) -> Iterator[Server]:
    yield from server_for(
        request,
        tmp_path_factory,
        "chaos-blob",
        delivery_worker=False,
        azure_blob_endpoint=emulator.azurite.endpoint_template,
    )


def _kill(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=10) == -signal.SIGKILL


def _wait_written(
    emulator: Emulator, container: str, count: int, timeout: float, worker: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while emulator.written(container) < count:
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        assert time.monotonic() < deadline, f"{emulator.written(container)} of {count} blobs"
        time.sleep(0.05)


@pytest.mark.timeout(900)
def test_sigkilled_blob_workers_write_each_message_exactly_once(
    api_only: Server, emulator: Emulator
) -> None:
    org = api_only.new_org()
    container = new_container(emulator.azurite)
    name = container.container_name
    destination = cloud_destination(
        org, name, shared_key(org), delivery={"mode": "unordered", "concurrency": 16}
    )
    source = new_source(org)
    subscribe(org, source, destination["id"])

    def fresh_worker() -> subprocess.Popen[bytes]:
        return start_worker(
            api_only,
            delivery_timeout_seconds=2,
            WAYPOST_AZURE_BLOB_ENDPOINT=emulator.azurite.endpoint_template,
        )

    worker = fresh_worker()
    log_ids: list[str] = []
    try:
        kills = list(KILL_AFTER)
        for n in range(MESSAGES):
            log_ids.append(send_ok(source, message(n)))
            if n % 10 == 0 and kills and emulator.written(name) >= kills[0]:
                kills.pop(0)
                _kill(worker)
                worker = fresh_worker()
        for threshold in kills:  # kills the sending outran
            _wait_written(emulator, name, threshold, 120, worker)
            _kill(worker)
            worker = fresh_worker()
        # A fresh worker drains the rest, the killed workers' claims once their leases end.
        _wait_written(emulator, name, MESSAGES, 300, worker)
        logs = {log_id: wait_log(org, log_id, "succeeded", timeout=60) for log_id in log_ids}
    finally:
        worker.send_signal(signal.SIGTERM)
        # A worker stopped by SIGTERM finishes its sends and exits 0.
        assert worker.wait(timeout=30) == 0, worker_output(api_only)

    found = blobs(container)
    # Exactly one blob per log, named by the log's fileName, and nothing else.
    assert sorted(found) == sorted(log["fileName"] for log in logs.values())
    assert len(found) == MESSAGES
    numbers = []
    for log_id, log in logs.items():
        assert log["fileName"].endswith(f"/{log_id}.json")
        body = json.loads(found[log["fileName"]])
        assert body["Meta"]["Logs"][0]["ID"] == log_id
        numbers.append(body["n"])
    assert sorted(numbers) == list(range(MESSAGES))

    # No blob overwritten: one PUT that created it, then only refusals (409) for retries.
    puts = emulator.blob_puts(name)
    created = Counter(blob for blob, status in puts if status == 201)
    assert {blob for blob, times in created.items() if times > 1} == set()
    assert set(created) == set(found)
    statuses = Counter(status for _blob, status in puts)
    assert set(statuses) <= {201, 409}, statuses
    print(f"{api_only.backend}: blob PUTs by status {dict(statuses)}")
