"""examples/receiver.py, run as its users run it, answers Waypost's verification."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import Org, free_port, listening_process

API = "/platform/v1"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "receiver.py"
TOKEN = "example-receiver-token-2026"


@dataclass
class RunningReceiver:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def example_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningReceiver]:
    port = free_port()
    log = tmp_path_factory.mktemp("receiver") / "receiver.log"
    with listening_process(
        [sys.executable, str(EXAMPLE), "--port", str(port), "--token", TOKEN], port, log
    ) as process:
        yield RunningReceiver(process, port, log)


def _create(api: httpx.Client, org: Org, endpoint: str, token: str) -> str:
    created = api.post(
        f"{API}/environments/{org.dev}/destinations",
        json={"name": "example receiver", "endpoint": endpoint, "verificationToken": token},
    )
    assert created.status_code == 201, created.text
    destination_id: str = created.json()["payload"]["destination"]["id"]
    return destination_id


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_example_receiver_verifies(
    org: Org, example_receiver: RunningReceiver, method: str
) -> None:
    with org.client() as api:
        dest_id = _create(api, org, example_receiver.url, TOKEN)
        answer = api.post(
            f"{API}/destinations/{dest_id}/verify", json={"verificationMethod": method}
        )
        assert answer.status_code == 200, f"{answer.text}\n{example_receiver.log_text()}"
        destination = answer.json()["payload"]["destination"]
        assert destination["verified"] is True
        assert destination["verification"]["status"] == "verified"
        assert destination["verification"]["method"] == method
        stored = api.get(f"{API}/destinations/{dest_id}").json()["payload"]["destination"]
        assert stored["verified"] is True
    assert example_receiver.process.poll() is None


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_example_receiver_rejects_a_wrong_token(
    org: Org, example_receiver: RunningReceiver, method: str
) -> None:
    with org.client() as api:
        dest_id = _create(api, org, example_receiver.url, "not-the-receivers-token")
        answer = api.post(
            f"{API}/destinations/{dest_id}/verify", json={"verificationMethod": method}
        )
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert [e["field"] for e in problem["errors"]] == ["verificationToken"]
        assert "401" in problem["detail"]
        assert "token" in problem["detail"]
        stored = api.get(f"{API}/destinations/{dest_id}").json()["payload"]["destination"]
        assert stored["verified"] is False
        assert stored["verification"]["status"] == "failed"
    assert example_receiver.process.poll() is None
