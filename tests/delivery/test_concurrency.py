"""A destination's `delivery.concurrency` bounds what is in flight to it: messages in
`unordered` mode, lanes in `fifo` mode with an `orderingKey`; and delivery uses it."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.delivery.support import message, new_destination, new_source, subscribe
from tests.receivers import Receiver, Reply, Seen
from tests.support import Org

MESSAGES = 12
HOLD_SECONDS = 0.3  # ample for a queued message to reach a receiver on loopback


class Crowd:
    """A receiver's answer that holds each delivery a while, long enough for one more
    than `limit` to arrive if the worker would send it (then all go at once), and keeps
    the most it ever saw in flight together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Condition()
        self.in_flight = 0
        self.peak = 0
        self.answered = 0

    def __call__(self, seen: Seen) -> Reply:
        body = seen.json() if seen.body else {}
        if "challenge" in body:
            return Reply(200, json.dumps({"challenge": body["challenge"]}).encode())
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.in_flight > self.limit, timeout=HOLD_SECONDS)
            self.in_flight -= 1
            self.answered += 1
            self.lock.notify_all()
        return Reply(200, b'{"ok": true}')

    def wait_answered(self, count: int) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: self.answered >= count, timeout=30), self.answered


@pytest.mark.parametrize(
    "delivery",
    [
        {"mode": "unordered", "concurrency": 3},
        {"mode": "fifo", "orderingKey": "/Patient/Identifiers/0/ID", "concurrency": 3},
    ],
    ids=["unordered", "ordering-key"],
)
def test_concurrency_bounds_what_is_in_flight_to_a_destination(
    org: Org, delivery: dict[str, Any]
) -> None:
    crowd = Crowd(limit=3)
    receiver = Receiver(crowd)
    try:
        source = new_source(org)
        destination = new_destination(org, receiver, delivery=delivery)
        subscribe(org, source, destination)
        for n in range(MESSAGES):
            body = message(n, destination)
            body["Patient"]["Identifiers"][0]["ID"] = f"patient-{n}"  # a lane each
            assert source.send(body).status_code == 200
        crowd.wait_answered(MESSAGES)
    finally:
        receiver.stop()
    assert crowd.peak == 3, f"at most {crowd.peak} in flight at once; the limit is 3"
