"""Send with Redox's send API; the destination receives it, in order, at least once."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.delivery.support import (
    BASE,
    TOKEN,
    Script,
    message,
    new_destination,
    new_source,
    scripted,
    subscribe,
    wait_log,
)
from tests.receivers import Reply
from tests.support import Org


def test_a_sent_message_arrives_with_meta_and_headers(org: Org) -> None:
    script = Script()
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        answer = source.send(message(1, destination))
        assert answer.status_code == 200, answer.text
        meta = answer.json()["Meta"]
        assert meta["Source"] == {"ID": source.id, "Name": source.name}
        assert [d["ID"] for d in meta["Destinations"]] == [destination]
        [log] = meta["Logs"]
        [got] = script.wait_delivered(1)
        _, headers, _ = script.deliveries[0]
    assert got["n"] == 1
    assert got["Meta"]["Logs"] == [{"ID": log["ID"], "AttemptID": log["AttemptID"]}]
    assert got["Meta"]["Source"] == {"ID": source.id, "Name": source.name}
    assert got["Meta"]["Destinations"][0]["ID"] == destination
    assert headers["verification-token"] == TOKEN
    assert headers["webhook-id"] == log["ID"]
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("Waypost/")


def _numbers(bodies: list[dict[str, Any]]) -> list[int]:
    return [b["n"] for b in bodies]


def test_fifo_holds_behind_a_failing_head_then_drains_in_order(org: Org) -> None:
    # The first message fails three times; nothing behind it may arrive before it does.
    script = Script(lambda body, before: Reply(500) if body["n"] == 0 and before < 3 else None)
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        for n in range(20):
            assert source.send(message(n, destination)).status_code == 200
        delivered = script.wait_delivered(20)
    assert _numbers(delivered) == list(range(20))
    tried = [b["n"] for b, _, _ in script.deliveries]
    assert tried[:4] == [0, 0, 0, 0], tried  # retried in place, nothing overtook it
    attempt_ids = {b["Meta"]["Logs"][0]["AttemptID"] for b, _, _ in script.deliveries[:4]}
    assert len(attempt_ids) == 4  # each attempt carries its own id


def test_an_ordering_key_splits_lanes_and_a_failing_lane_holds_only_itself(org: Org) -> None:
    # Patient A's first message fails until patient B's five have all arrived.
    b_done = threading.Event()

    def fail(body: dict[str, Any], before: int) -> Reply | None:
        if body["Patient"]["Identifiers"][0]["ID"] == "A" and not b_done.is_set():
            return Reply(503)
        return None

    script = Script(fail)
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(
            org, receiver, delivery={"mode": "fifo", "orderingKey": "/Patient/Identifiers/0/ID"}
        )
        subscribe(org, source, destination)
        for n in range(10):
            body = message(n, destination)
            body["Patient"]["Identifiers"][0]["ID"] = "A" if n % 2 == 0 else "B"
            assert source.send(body).status_code == 200
        arrived = script.wait_delivered(5)
        assert _numbers(arrived) == [1, 3, 5, 7, 9]  # lane B went on in order
        b_done.set()
        delivered = script.wait_delivered(10)
    assert _numbers(delivered)[5:] == [0, 2, 4, 6, 8]  # lane A drained in order


def test_unordered_delivery_is_not_held_by_a_failure(org: Org) -> None:
    release = threading.Event()
    script = Script(
        lambda body, before: Reply(500) if body["n"] == 0 and not release.is_set() else None
    )
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver, delivery={"mode": "unordered"})
        subscribe(org, source, destination)
        for n in range(6):
            assert source.send(message(n, destination)).status_code == 200
        assert sorted(_numbers(script.wait_delivered(5))) == [1, 2, 3, 4, 5]
        release.set()
        assert sorted(_numbers(script.wait_delivered(6))) == list(range(6))


def test_retry_after_is_honoured_on_503(org: Org) -> None:
    # 1,500 s, scaled by the test server's 0.001: the retry comes 1.5 s later, where the
    # fifo schedule alone would retry at once.
    script = Script(
        lambda body, before: Reply(503, headers={"Retry-After": "1500"}) if before == 0 else None
    )
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        assert source.send(message(0, destination)).status_code == 200
        script.wait_delivered(1)
    (_, _, first), (_, _, second) = script.deliveries
    assert second - first >= 1.4


def test_max_retry_seconds_fails_the_message_and_the_lane_moves_on(org: Org) -> None:
    script = Script(lambda body, before: Reply(500) if body["n"] == 0 else None)
    with scripted(script) as receiver:
        source = new_source(org)
        # 500 s scaled by 0.001: half a second of retries, then failed.
        destination = new_destination(org, receiver, delivery={"maxRetrySeconds": 500})
        subscribe(org, source, destination)
        first = source.send(message(0, destination)).json()["Meta"]["Logs"][0]["ID"]
        assert source.send(message(1, destination)).status_code == 200
        assert _numbers(script.wait_delivered(1)) == [1]
    failed = wait_log(org, first, "failed")
    assert failed["attempts"]["total"] >= 2
    assert failed["attempts"]["latest"]["httpStatus"] == 500
    assert failed["attempts"]["latest"]["status"] == "failed"


def test_the_log_records_each_attempt(org: Org) -> None:
    script = Script(lambda body, before: Reply(500) if before == 0 else None)
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        log_id = source.send(message(0, destination)).json()["Meta"]["Logs"][0]["ID"]
        script.wait_delivered(1)
    found = wait_log(org, log_id, "succeeded")
    assert found["attempts"]["total"] == 2
    assert found["attempts"]["latest"]["status"] == "succeeded"
    assert found["attempts"]["latest"]["httpStatus"] == 200
    assert found["destination"]["id"] == destination
    assert found["source"] == {"id": source.id, "name": source.name}
    assert found["type"] == "send"


def test_a_changed_token_holds_the_queue_until_verified_again(org: Org) -> None:
    # Everything fails until the receiver "moves"; then the token changes, which clears
    # verification: nothing may arrive until verify proves the receiver again.
    moved = threading.Event()
    script = Script(lambda body, before: None if moved.is_set() else Reply(500))
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        for n in range(3):
            assert source.send(message(n, destination)).status_code == 200
        client = org.client()
        changed = client.patch(
            f"{BASE}/destinations/{destination}", json={"verificationToken": "new-token"}
        )
        assert changed.json()["payload"]["destination"]["verified"] is False
        refused = source.send(message(9, destination))
        assert refused.status_code == 422  # an unproven receiver takes no new messages
        tried = len(script.deliveries)
        moved.set()
        # Retries come every few milliseconds here; held, none may come at all.
        time.sleep(0.5)
        assert len(script.deliveries) == tried
        verified = client.post(
            f"{BASE}/destinations/{destination}/verify", json={"verificationToken": TOKEN}
        )
        assert verified.status_code == 200, verified.text
        assert _numbers(script.wait_delivered(3)) == [0, 1, 2]


def test_deleting_a_destination_with_queued_messages(org: Org) -> None:
    script = Script(lambda body, before: Reply(500))
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        subscribe(org, source, destination)
        log_ids = [
            source.send(message(n, destination)).json()["Meta"]["Logs"][0]["ID"] for n in range(3)
        ]
        client = org.client()
        refused = client.delete(f"{BASE}/destinations/{destination}")
        assert refused.status_code == 409
        assert "3 message(s)" in refused.json()["detail"]
        forced = client.delete(f"{BASE}/destinations/{destination}", params={"force": "true"})
        assert forced.status_code == 200, forced.text
    for log_id in log_ids:
        failed = wait_log(org, log_id, "failed")
        assert failed["failureReason"] == "destination deleted"
    assert client.get(f"{BASE}/destinations/{destination}").status_code == 404
