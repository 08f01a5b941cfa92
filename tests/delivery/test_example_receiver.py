"""examples/receiver.py prints what Waypost delivers, and handles a message once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.delivery.support import BASE, message, new_source, subscribe
from tests.support import Org, free_port

RECEIVER = Path(__file__).resolve().parents[2] / "examples" / "receiver.py"
TOKEN = "example-token"


def _wait_for(predicate: object, what: str, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}:\n{log.read_text(errors='replace')}"
        time.sleep(0.05)


def test_the_example_receiver_prints_a_delivered_message_once(org: Org, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--port", str(port), "--token", TOKEN],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

        _wait_for(listening, "the example receiver did not listen", log)
        client = org.client()
        created = client.post(
            f"{BASE}/environments/{org.dev}/destinations",
            json={
                "name": "Example",
                "endpoint": f"http://127.0.0.1:{port}/",
                "verificationToken": TOKEN,
            },
        )
        destination = created.json()["payload"]["destination"]["id"]
        assert client.post(f"{BASE}/destinations/{destination}/verify").status_code == 200
        source = new_source(org)
        subscribe(org, source, destination)
        sent = source.send(message(1, destination))
        log_id = sent.json()["Meta"]["Logs"][0]["ID"]
        _wait_for(lambda: log_id in log.read_text(), "the delivery was not printed", log)
        text = log.read_text()
        assert f"message received: PatientAdmin Arrival, log {log_id}" in text
        assert '"MRN-1"' in text  # the body itself
        # A second delivery of the same log (at least once) is recognised, not handled again.
        again = httpx.post(
            f"http://127.0.0.1:{port}/",
            json=message(1),
            headers={"verification-token": TOKEN, "webhook-id": log_id},
        )
        assert again.json() == {"received": True, "duplicate": True}
        after = log.read_text()  # the receiver logs before it answers
        assert after.count("message received:") == 1
        assert f"message {log_id} received again; already handled" in after
    finally:
        process.terminate()
        assert process.wait(timeout=10) in (0, -15)
