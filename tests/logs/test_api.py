"""Redox's log API over real HTTP on both backends: search (each filter, paging, newest
first, refused values) and one log (attempts, payload by role, 404 outside)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.access_support import assert_invalid, assert_problem, make_user
from tests.logs.helpers import Sent, log_url, search_url, write
from tests.support import Org


def at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


def found(org: Org, body: dict[str, Any] | None = None, token: str | None = None) -> list[str]:
    with org.client(token) as api:
        response = api.post(search_url(org.dev), json=body)
    assert response.status_code == 200, response.text
    assert "links" not in response.json()["meta"]
    return [log["id"] for log in response.json()["payload"]["logs"]]


def test_search_answers_newest_first_in_redox_shape(org: Org) -> None:
    pending = write(org, Sent(org.dev, at(1)))
    delivered = write(
        org,
        Sent(
            org.dev,
            at(2),
            attempts=[
                (at(3), "failed", 503, "HTTP 503", "pending", None, None),
                (at(4), "succeeded", 200, None, "succeeded", None, None),
            ],
        ),
    )
    failed = write(
        org,
        Sent(
            org.dev,
            at(5),
            test=True,
            attempts=[(at(6), "failed", None, "connection refused", "failed", "gave up", None)],
        ),
    )
    write(org, Sent(org.staging, at(7)))  # another environment's
    with org.client() as api:
        without_body = api.post(search_url(org.dev))
        assert without_body.status_code == 200, without_body.text
    shown = without_body.json()["payload"]["logs"]
    assert [log["id"] for log in shown] == [failed.log_id, delivered.log_id, pending.log_id]
    assert found(org, {}) == [failed.log_id, delivered.log_id, pending.log_id]
    newest, middle, oldest = shown
    assert oldest == {
        "id": pending.log_id,
        "type": "send",
        "status": "pending",
        "dataModel": "PatientAdmin",
        "eventType": "NewPatient",
        "test": False,
        "source": {"id": oldest["source"]["id"], "name": "EHR"},
        "destination": {"id": oldest["destination"]["id"], "name": "Receiver"},
        "createdAt": at(1),
        "updatedAt": at(1),
        "attempts": {"total": 0, "latest": None},
    }
    assert middle["status"] == "succeeded"
    assert middle["updatedAt"] == at(4)
    assert middle["attempts"] == {
        "total": 2,
        "latest": {
            "id": delivered.attempt_ids[1],
            "attemptAt": at(4),
            "status": "succeeded",
            "httpStatus": 200,
            "error": None,
            "durationMs": 12,
        },
    }
    assert "failureReason" not in middle
    assert newest["status"] == "failed"
    assert newest["failureReason"] == "gave up"
    assert newest["test"] is True
    assert newest["attempts"]["latest"]["error"] == "connection refused"


def test_each_filter(org: Org) -> None:
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    admit = write(org, Sent(org.dev, at(1), event_type="Admit", source_id=source))
    summary = write(
        org, Sent(org.dev, at(2), data_model="Clinical Summary", destination_id=destination)
    )
    query = write(
        org,
        Sent(
            org.dev,
            at(3),
            type="request",
            data_model="ClinicalSummary",
            attempts=[(at(9), "succeeded", 200, None, "succeeded", None, '{"ok": true}')],
        ),
    )
    failed = write(
        org,
        Sent(org.dev, at(4), attempts=[(at(5), "failed", 500, "HTTP 500", "failed", "x", None)]),
    )

    assert found(org, {"eventType": "Admit"}) == [admit.log_id]
    assert found(org, {"dataModel": "Clinical Summary"}) == [query.log_id, summary.log_id]
    assert found(org, {"dataModel": "ClinicalSummary"}) == [query.log_id, summary.log_id]
    assert found(org, {"dataModel": "PatientAdmin"}) == [failed.log_id, admit.log_id]
    assert found(org, {"sourceId": source}) == [admit.log_id]
    assert found(org, {"sourceId": "not-a-uuid"}) == []
    assert found(org, {"destinationId": destination}) == [summary.log_id]
    assert found(org, {"destinationId": str(uuid.uuid4())}) == []
    assert found(org, {"status": "failed"}) == [failed.log_id]
    assert found(org, {"status": "succeeded"}) == [query.log_id]
    assert found(org, {"status": "pending"}) == [summary.log_id, admit.log_id]
    assert found(org, {"type": "request"}) == [query.log_id]
    assert found(org, {"type": "send"}) == [failed.log_id, summary.log_id, admit.log_id]
    # Time bounds are inclusive, any offset is taken, and a time without one is UTC.
    assert found(org, {"createdAfter": at(2), "createdBefore": at(3)}) == [
        query.log_id,
        summary.log_id,
    ]
    assert found(org, {"createdAfter": "2026-01-01T01:00:03+01:00"}) == [
        failed.log_id,
        query.log_id,
    ]
    assert found(org, {"createdBefore": "2026-01-01T00:00:01"}) == [admit.log_id]
    assert found(org, {"updatedAfter": at(5)}) == [failed.log_id, query.log_id]
    assert found(org, {"updatedBefore": at(4)}) == [summary.log_id, admit.log_id]
    assert found(org, {"status": "pending", "eventType": "Admit", "sourceId": source}) == [
        admit.log_id
    ]
    # Redox's other fields are accepted; Waypost has no backfill traffic.
    everything = [failed.log_id, query.log_id, summary.log_id, admit.log_id]
    redox_fields = {
        "dataMode": "realtime",
        "serviceRegion": "AWS_USA_EAST_1",
        "facilityCode": "2.16.840.1.113883.3.6147.458.2",
    }
    assert found(org, redox_fields) == everything
    assert found(org, {"dataMode": "backfill"}) == []


def test_paging_across_pages(org: Org) -> None:
    written = [write(org, Sent(org.dev, at(i))).log_id for i in range(7)]
    write(org, Sent(org.dev, at(8), event_type="Other"))
    seen: list[str] = []
    url: str | None = f"{search_url(org.dev)}?_count=3"
    pages = 0
    with org.client() as api:
        while url is not None:
            response = api.post(url, json={"eventType": "NewPatient"})
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["payload"]["logs"]) <= 3
            seen += [log["id"] for log in page["payload"]["logs"]]
            url = (page["meta"].get("links") or {}).get("next")
            pages += 1
    assert seen == written[::-1]
    assert pages == 3
    assert len(found(org)) == 8


def test_refused_filters_and_paging(org: Org) -> None:
    with org.client() as api:
        refused = assert_invalid(api.post(search_url(org.dev), json={"status": "ok"}), "status")
        assert "'pending', 'succeeded' or 'failed'" in refused["errors"][0]["message"]
        refused = assert_invalid(api.post(search_url(org.dev), json={"type": "receive"}), "type")
        assert "'send' or 'request'" in refused["errors"][0]["message"]
        for body, field in (
            ({"dataMode": "later"}, "dataMode"),
            ({"createdAfter": "yesterday"}, "createdAfter"),
            ({"updatedBefore": "2026-13-01T00:00:00Z"}, "updatedBefore"),
            ({"createdBefore": 1767225600}, "createdBefore"),
            ({"eventType": "a\x00b"}, "eventType"),
            ({"dataModel": "x" * 256}, "dataModel"),
            ({"searchTerms": []}, "searchTerms"),
        ):
            assert_invalid(api.post(search_url(org.dev), json=body), field)
        assert_invalid(api.post(search_url(org.dev), params={"_count": 51}), "_count")
        assert_invalid(api.post(search_url(org.dev), params={"_count": 0}), "_count")
        assert_invalid(api.post(search_url(org.dev), params={"_cursor": "nope"}), "_cursor")
        assert_problem(api.post(search_url(org.dev), json=["status"]), 422)
        assert_problem(api.post(search_url(str(uuid.uuid4()))), 404)


def test_one_log_with_every_attempt_and_the_payload_by_role(org: Org) -> None:
    sent = Sent(
        org.dev,
        at(1),
        attempts=[
            (at(2), "failed", 503, "HTTP 503", "pending", None, None),
            (at(3), "failed", None, "timed out after 30 s", "pending", None, None),
            (at(4), "succeeded", 202, None, "succeeded", None, None),
        ],
    )
    written = write(org, sent)
    viewer = make_user(org, Development="viewer")
    support = make_user(org, Development="support")
    with org.client() as api:
        response = api.get(log_url(org.id, written.log_id))
    assert response.status_code == 200, response.text
    assert response.json()["meta"] == {"version": "1.0.0"}
    result = response.json()["payload"]["result"]
    assert result["id"] == written.log_id
    assert result["attempts"]["total"] == 3
    assert [a["id"] for a in result["attempts"]["all"]] == written.attempt_ids
    assert [a["httpStatus"] for a in result["attempts"]["all"]] == [503, None, 202]
    assert result["attempts"]["latest"] == result["attempts"]["all"][-1]
    expected_meta = {
        "DataModel": "PatientAdmin",
        "EventType": "NewPatient",
        "Source": {"ID": sent.source_id, "Name": "EHR"},
        "Destinations": [{"ID": sent.destination_id, "Name": "Receiver"}],
        "Logs": [{"ID": written.log_id, "AttemptID": written.attempt_ids[-1]}],
    }
    assert result["payload"] == {**sent.body, "Meta": expected_meta}
    assert "response" not in result  # a send log has no answer

    with org.client(support.token) as api:
        as_support = api.get(log_url(org.id, written.log_id)).json()["payload"]["result"]
    assert as_support == result
    with org.client(viewer.token) as api:
        as_viewer = api.get(log_url(org.id, written.log_id), params={"dataMode": "realtime"})
    assert as_viewer.status_code == 200, as_viewer.text
    metadata = {k: v for k, v in result.items() if k != "payload"}
    assert as_viewer.json()["payload"]["result"] == metadata


def test_a_request_log_keeps_the_answer(org: Org) -> None:
    written = write(
        org,
        Sent(
            org.dev,
            at(1),
            type="request",
            data_model="Clinical Summary",
            event_type="DocumentGet",
            attempts=[(at(2), "succeeded", 200, None, "succeeded", None, '{"Documents": []}')],
        ),
    )
    viewer = make_user(org, Development="viewer")
    with org.client() as api:
        result = api.get(log_url(org.id, written.log_id)).json()["payload"]["result"]
    assert result["type"] == "request"
    assert result["response"] == {"Documents": []}
    with org.client(viewer.token) as api:
        hidden = api.get(log_url(org.id, written.log_id)).json()["payload"]["result"]
    assert "response" not in hidden
    assert "payload" not in hidden


def test_a_log_outside_your_environments_is_not_found(org: Org, other_org: Org) -> None:
    written = write(org, Sent(org.dev, at(1)))
    staging_only = make_user(org, Staging="engineer")
    with org.client(staging_only.token) as api:
        assert_problem(api.get(log_url(org.id, written.log_id)), 404)
        assert_problem(api.post(search_url(org.dev)), 404)
    with other_org.client() as api:
        assert_problem(api.get(log_url(org.id, written.log_id)), 404)
        assert_problem(api.get(log_url(other_org.id, written.log_id)), 404)
        assert_problem(api.post(search_url(org.dev)), 404)
    with org.client() as api:
        assert_problem(api.get(log_url(org.id, str(uuid.uuid4()))), 404)
        assert_problem(api.get(log_url(org.id, "not-a-uuid")), 404)
        assert_problem(api.get(log_url("x", written.log_id)), 404)
        # A filter value outside its set is a 400 naming the allowed values (issue 13).
        refused = assert_problem(
            api.get(log_url(org.id, written.log_id), params={"dataMode": "x"}), 400
        )
        assert [e["field"] for e in refused["errors"]] == ["dataMode"]
        assert "realtime" in refused["detail"]
        assert api.get(log_url(org.id, written.log_id)).status_code == 200
