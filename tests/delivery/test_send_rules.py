"""The send API's rules: what it refuses, and that a refusal queues nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.access_support import assert_problem
from tests.delivery.support import (
    BASE,
    Script,
    Sender,
    message,
    new_destination,
    new_source,
    scripted,
    subscribe,
)
from tests.receivers import Receiver, Reply
from tests.support import Org


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def receiver(script: Script) -> Any:
    with scripted(script) as running:
        yield running


@pytest.fixture
def wired(org: Org, receiver: Receiver) -> tuple[Sender, str]:
    source = new_source(org)
    destination = new_destination(org, receiver)
    subscribe(org, source, destination)
    return source, destination


def _field(answer: httpx.Response, status: int, field: str) -> None:
    problem = assert_problem(answer, status)
    assert [e["field"] for e in problem.get("errors") or []] == [field], problem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"Patient": {}}', "Meta"),
        (b'{"Meta": {"EventType": "Arrival"}}', "Meta.DataModel"),
        (b'{"Meta": {"DataModel": "PatientAdmin"}}', "Meta.EventType"),
        (b'{"Meta": {"DataModel": 7, "EventType": "Arrival"}}', "Meta.DataModel"),
        (b'{"Meta": {"DataModel": "PatientAdmin", "EventType": ""}}', "Meta.EventType"),
        (b'{"Meta": {"DataModel": "Patient\\u0000Admin", "EventType": "A"}}', "Meta.DataModel"),
        (
            b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival", "Test": "yes"}}',
            "Meta.Test",
        ),
        (
            b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival", "Destinations": []}}',
            "Meta.Destinations",
        ),
        (
            b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival", '
            b'"Destinations": [{}]}}',
            "Meta.Destinations[0].ID",
        ),
    ],
)
def test_a_malformed_message_is_400_naming_the_field(
    wired: tuple[Sender, str], body: bytes, field: str
) -> None:
    source, _ = wired
    answer = source.http.post(
        "/endpoint",
        content=body,
        headers={"Authorization": f"Bearer {source.token}", "Content-Type": "application/json"},
    )
    _field(answer, 400, field)


def test_a_destination_listed_twice_is_400(wired: tuple[Sender, str]) -> None:
    source, destination = wired
    _field(source.send(message(0, destination, destination)), 400, "Meta.Destinations[1].ID")


def test_tokens_other_than_a_source_token_are_refused(org: Org, wired: tuple[Sender, str]) -> None:
    source, destination = wired
    body = json.dumps(message(0, destination))
    for headers in (
        {},
        {"Authorization": f"Bearer {org.owner_token}"},  # a Platform API token
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {source.token}"},
    ):
        answer = source.http.post("/endpoint", content=body, headers=headers)
        assert_problem(answer, 401)
    # And the other way round: a source token does not open the Platform API.
    refused = source.http.get(
        f"{BASE}/environments/{org.dev}/destinations",
        headers={"Authorization": f"Bearer {source.token}"},
    )
    assert refused.status_code == 401


def _unverified(org: Org, receiver: Receiver) -> str:
    created = org.client().post(
        f"{BASE}/environments/{org.dev}/destinations",
        json={"name": "Unproven", "endpoint": receiver.url, "verificationToken": "t"},
    )
    assert created.status_code == 201, created.text
    destination_id: str = created.json()["payload"]["destination"]["id"]
    return destination_id


def test_routing_refusals_queue_nothing_for_any_destination(
    org: Org, other_org: Org, wired: tuple[Sender, str], receiver: Receiver, script: Script
) -> None:
    source, destination = wired
    unsubscribed = new_destination(org, receiver)
    elsewhere = new_destination(other_org, receiver)
    unverified = _unverified(org, receiver)
    subscribe(org, source, unverified)
    for listed, status in (
        ([destination, str(uuid.uuid4())], 404),
        ([destination, "not-a-uuid"], 404),
        ([destination, elsewhere], 404),
        ([destination, unsubscribed], 403),
    ):
        problem = assert_problem(source.send(message(0, *listed)), status)
        assert listed[1] in problem["detail"]
    problem = assert_problem(source.send(message(0, destination, unsubscribed)), 403)
    assert problem["detail"] == (
        f"No subscription for PatientAdmin from this source to {unsubscribed}"
    )
    _field(source.send(message(0, destination, unverified)), 422, "Meta.Destinations[1].ID")
    problem = assert_problem(source.send(message(0, data_model="Results")), 403)
    assert problem["detail"] == "No subscriptions found for message"
    # Nothing of the refused requests was queued: the first delivery is the next message.
    assert source.send(message(1, destination)).status_code == 200
    assert [b["n"] for b in script.wait_delivered(1)] == [1]


def test_without_destinations_a_message_goes_to_every_subscribed_one(
    org: Org, receiver: Receiver, script: Script
) -> None:
    source = new_source(org)
    first, second = new_destination(org, receiver), new_destination(org, receiver)
    subscribe(org, source, first)
    subscribe(org, source, second, data_model="Patient Admin")  # the same data model
    answer = source.send(message(7))
    assert answer.status_code == 200, answer.text
    meta = answer.json()["Meta"]
    assert [d["ID"] for d in meta["Destinations"]] == [first, second]
    assert len({log["ID"] for log in meta["Logs"]}) == 2
    got = script.wait_delivered(2)
    assert sorted(b["Meta"]["Destinations"][0]["ID"] for b in got) == sorted([first, second])


def test_an_idempotency_key_answers_the_first_answer_again(
    wired: tuple[Sender, str], script: Script
) -> None:
    source, destination = wired
    first = source.send(message(0, destination), **{"Idempotency-Key": "order-42"})
    again = source.send(message(0, destination), **{"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    changed = source.send(message(1, destination), **{"Idempotency-Key": "order-42"})
    assert_problem(changed, 409)
    other = source.send(message(2, destination), **{"Idempotency-Key": "order-43"})
    assert other.status_code == 200
    assert [b["n"] for b in script.wait_delivered(2)] == [0, 2]
    _field(
        source.send(message(3, destination), **{"Idempotency-Key": "x" * 256}),
        400,
        "Idempotency-Key",
    )


def test_a_message_may_exceed_the_platform_limit_up_to_the_send_limit(
    wired: tuple[Sender, str], script: Script
) -> None:
    source, destination = wired
    big = message(
        0, destination, Note="x" * (1536 * 1024)
    )  # 1.5 MiB: over the Platform API's 1 MiB
    assert source.send(big).status_code == 200
    too_big = message(1, destination, Note="x" * (2560 * 1024))  # over this server's 2 MiB
    assert_problem(source.send(too_big), 413)
    assert [b["n"] for b in script.wait_delivered(1)] == [0]


def test_a_synchronous_query_relays_the_receivers_answer(org: Org) -> None:
    def answer(body: dict[str, Any], before: int) -> Reply | None:
        mrn = body["Patient"]["Identifiers"][0]["ID"]
        if mrn == "MRN-500":
            return Reply(500, b'{"error": "down"}')
        if mrn == "MRN-text":
            return Reply(200, b"plain words", {"Content-Type": "text/plain"})
        return None

    script = Script(answer)
    with scripted(script) as receiver:
        source = new_source(org)
        destination = new_destination(org, receiver)
        other = new_destination(org, receiver)
        for target in (destination, other):
            subscribe(org, source, target, data_model="PatientSearch")
        query = message(0, destination, data_model="PatientSearch", event_type="Query")
        relayed = source.send(query)
        assert relayed.status_code == 200, relayed.text
        assert relayed.json() == {"ok": True}  # the receiver's own body
        failing = message(0, destination, data_model="Patient Search", event_type="Query")
        failing["Patient"]["Identifiers"][0]["ID"] = "MRN-500"
        problem = assert_problem(source.send(failing), 502)
        assert destination in problem["detail"] and "HTTP 500" in problem["detail"]
        text = message(0, destination, data_model="PatientSearch", event_type="Query")
        text["Patient"]["Identifiers"][0]["ID"] = "MRN-text"
        assert_problem(source.send(text), 502)
        two = message(0, destination, other, data_model="PatientSearch", event_type="Query")
        _field(source.send(two), 400, "Meta.Destinations")
        _field(
            source.send(message(0, data_model="PatientSearch", event_type="Query")),
            400,
            "Meta.Destinations",
        )
    assert len(script.deliveries) == 3  # sent at once, never queued or retried


def test_a_cloud_destination_without_a_credential_is_refused(
    org: Org, wired: tuple[Sender, str]
) -> None:
    source, destination = wired
    created = org.client().post(
        f"{BASE}/environments/{org.dev}/destinations",
        json={
            "name": "Lakehouse",
            "cloudProviderSettings": {
                "typeId": "azure",
                "productId": "databricks",
                "settings": {"storageAccountName": "acmedata", "containerName": "inbound"},
            },
        },
    )
    cloud: str = created.json()["payload"]["destination"]["id"]
    subscribe(org, source, cloud)
    _field(source.send(message(0, destination, cloud)), 422, "Meta.Destinations[1].ID")
