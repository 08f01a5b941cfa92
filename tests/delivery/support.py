"""Helpers for send-and-deliver tests: a source with a send token, verified destinations
on loopback receivers, subscriptions, and waiting for what receivers get."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.receivers import Receiver, Reply, Seen
from tests.support import Org

BASE = "/platform/v1"
TOKEN = "delivery-verification-token"


class Script:
    """A receiver's behaviour for deliveries: answers the verify handshake, records each
    delivery, and fails the ones `fail` says to (a function of the delivery and how many
    times this log was seen before)."""

    def __init__(self, fail: Callable[[dict[str, Any], int], Reply | None] | None = None) -> None:
        self.fail = fail
        self.lock = threading.Condition()
        self.deliveries: list[tuple[dict[str, Any], dict[str, str], float]] = []
        self.delivered: list[dict[str, Any]] = []  # answered 2xx, in arrival order
        self.tries: dict[str, int] = {}
        self.headers_now: dict[str, str] = {}

    def __call__(self, seen: Seen) -> Reply:
        body = seen.json() if seen.body else {}
        if "challenge" in body:
            return Reply(200, json.dumps({"challenge": body["challenge"]}).encode())
        log_id = body["Meta"]["Logs"][0]["ID"]
        with self.lock:
            before = self.tries.get(log_id, 0)
            self.tries[log_id] = before + 1
            self.headers_now = seen.headers  # for a `fail` that looks at them
            reply = self.fail(body, before) if self.fail else None
            self.deliveries.append((body, seen.headers, time.monotonic()))
            if reply is None:
                self.delivered.append(body)
            self.lock.notify_all()
        return reply or Reply(200, b'{"ok": true}')

    def wait_delivered(
        self, count: int, timeout: float = 30.0, *, distinct: bool = False
    ) -> list[dict[str, Any]]:
        """Every 2xx delivery so far, once `count` have arrived (`distinct`: counting
        each log once, however often it was redelivered)."""
        deadline = time.monotonic() + timeout

        def arrived() -> int:
            if not distinct:
                return len(self.delivered)
            return len({b["Meta"]["Logs"][0]["ID"] for b in self.delivered})

        with self.lock:
            while arrived() < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{arrived()} of {count} delivered in {timeout} s"
                self.lock.wait(left)
            return list(self.delivered)


@dataclass
class Sender:
    """A source of an environment, with a token for the send API."""

    id: str
    name: str
    token: str
    http: httpx.Client

    def send(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return self.http.post(
            "/endpoint",
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                **headers,
            },
        )


def new_source(org: Org, env_id: str | None = None, name: str = "EHR feed") -> Sender:
    client = org.client()
    created = client.post(f"{BASE}/environments/{env_id or org.dev}/sources", json={"name": name})
    assert created.status_code == 201, created.text
    source = created.json()["payload"]["source"]
    auth = client.post(
        "/auth/authenticate", json={"apiKey": source["apiKey"], "secret": source["secret"]}
    )
    assert auth.status_code == 200, auth.text
    return Sender(source["id"], source["name"], auth.json()["accessToken"], client)


def new_destination(
    org: Org,
    receiver: Receiver,
    *,
    env_id: str | None = None,
    delivery: dict[str, Any] | None = None,
) -> str:
    client = org.client()
    body: dict[str, Any] = {
        "name": f"Receiver {uuid.uuid4().hex[:6]}",
        "endpoint": receiver.url,
        "verificationToken": TOKEN,
    }
    if delivery is not None:
        body["delivery"] = delivery
    created = client.post(f"{BASE}/environments/{env_id or org.dev}/destinations", json=body)
    assert created.status_code == 201, created.text
    destination_id: str = created.json()["payload"]["destination"]["id"]
    verified = client.post(f"{BASE}/destinations/{destination_id}/verify")
    assert verified.status_code == 200, verified.text
    return destination_id


def subscribe(
    org: Org,
    source: Sender,
    destination_id: str,
    data_model: str = "PatientAdmin",
    env_id: str | None = None,
) -> None:
    created = org.client().post(
        f"{BASE}/environments/{env_id or org.dev}/subscriptions",
        json={
            "source": {"id": source.id},
            "destination": {"id": destination_id},
            "dataModel": data_model,
        },
    )
    assert created.status_code == 201, created.text


def message(
    n: int,
    *destinations: str,
    data_model: str = "PatientAdmin",
    event_type: str = "Arrival",
    **extra: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"DataModel": data_model, "EventType": event_type, "Test": True}
    if destinations:
        meta["Destinations"] = [{"ID": d} for d in destinations]
    return {
        "Meta": meta,
        "Patient": {"Identifiers": [{"ID": f"MRN-{n}", "IDType": "MR"}]},
        "n": n,
        **extra,
    }


@contextmanager
def scripted(script: Script) -> Iterator[Receiver]:
    receiver = Receiver(script)
    try:
        yield receiver
    finally:
        receiver.stop()


def _log(org: Org, log_id: str) -> dict[str, Any]:
    answer = org.client().get(f"{BASE}/organizations/{org.id}/logs/{log_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["payload"]["result"]
    return found


def wait_log(org: Org, log_id: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = _log(org, log_id)
        if found["status"] == status:
            return found
        assert time.monotonic() < deadline, f"log {log_id} is {found['status']}, not {status}"
        time.sleep(0.05)
