"""Subscriptions over real HTTP on both backends: create, read, list, filter, delete,
roles, and the routing lookup ingest calls."""

from __future__ import annotations

import uuid
from typing import Any

from tests.access_support import assert_invalid, assert_problem, audit_events, make_user
from tests.subscriptions.helpers import API, new_destination, new_source, subscribe
from tests.support import Org, Server
from waypost.db import Database
from waypost.subscriptions import service


def env_subscriptions(env_id: str) -> str:
    return f"{API}/environments/{env_id}/subscriptions"


def subscription_url(subscription_id: str) -> str:
    return f"{API}/subscriptions/{subscription_id}"


def body(source_id: str, destination_id: str, data_model: Any = "PatientAdmin") -> dict[str, Any]:
    return {
        "source": {"id": source_id},
        "destination": {"id": destination_id},
        "dataModel": data_model,
    }


def test_create_get_list_and_the_organization_lists(org: Org) -> None:
    source = new_source(org, org.dev, "EHR")
    destination = new_destination(org, org.dev, "Lakehouse")
    created = subscribe(org, org.dev, source["id"], destination["id"], "Clinical Summary")
    assert uuid.UUID(created["id"])
    assert created == {
        "id": created["id"],
        "source": {"id": source["id"], "name": "EHR"},
        "destination": {"id": destination["id"], "name": "Lakehouse"},
        "dataModel": "Clinical Summary",
        "environment": {"id": org.dev, "environmentFlag": "Development"},
        "createdAt": created["createdAt"],
    }
    with org.client() as api:
        got = api.get(subscription_url(created["id"]))
        assert got.status_code == 200, got.text
        assert got.json() == {"meta": {"version": "1.0.0"}, "payload": {"subscription": created}}
        listed = api.get(env_subscriptions(org.dev)).json()["payload"]["subscriptions"]
        assert listed == [created]
        assert api.get(env_subscriptions(org.staging)).json()["payload"]["subscriptions"] == []
        v1 = api.get(f"{API}/organizations/{org.id}/subscriptions")
        v0 = api.get(f"/platform/v0/organizations/{org.id}/subscriptions")
    assert v1.status_code == 200, v1.text
    assert v1.json()["payload"]["subscriptions"] == [created]
    assert v0.json() == v1.json()


def test_names_follow_renames(org: Org) -> None:
    source = new_source(org, org.dev)
    destination = new_destination(org, org.dev, "Before")
    created = subscribe(org, org.dev, source["id"], destination["id"])
    with org.client() as api:
        renamed = api.patch(f"{API}/destinations/{destination['id']}", json={"name": "After"})
        assert renamed.status_code == 200, renamed.text
        got = api.get(subscription_url(created["id"])).json()["payload"]["subscription"]
    assert got["destination"] == {"id": destination["id"], "name": "After"}


def test_the_same_triple_twice_is_a_conflict_with_or_without_spaces(org: Org) -> None:
    source = new_source(org, org.dev)
    destination = new_destination(org, org.dev)
    subscribe(org, org.dev, source["id"], destination["id"], "Clinical Summary")
    with org.client() as api:
        again = api.post(
            env_subscriptions(org.dev),
            json=body(source["id"], destination["id"], "ClinicalSummary"),
        )
        assert_problem(again, 409)
        other_model = api.post(
            env_subscriptions(org.dev), json=body(source["id"], destination["id"], "PatientAdmin")
        )
        assert other_model.status_code == 201, other_model.text
        listed = api.get(env_subscriptions(org.dev)).json()["payload"]["subscriptions"]
    assert [s["dataModel"] for s in listed] == ["Clinical Summary", "PatientAdmin"]


def test_source_and_destination_must_be_in_the_environment(org: Org, other_org: Org) -> None:
    source = new_source(org, org.dev)
    destination = new_destination(org, org.dev)
    staging_source = new_source(org, org.staging)
    staging_destination = new_destination(org, org.staging)
    foreign_source = new_source(other_org, other_org.dev)
    with org.client() as api:
        for given, field in (
            (body(staging_source["id"], destination["id"]), "source.id"),
            (body(foreign_source["id"], destination["id"]), "source.id"),
            (body(str(uuid.uuid4()), destination["id"]), "source.id"),
            (body(source["id"], staging_destination["id"]), "destination.id"),
            (body(source["id"], str(uuid.uuid4())), "destination.id"),
        ):
            assert_invalid(api.post(env_subscriptions(org.dev), json=given), field)
        both = assert_problem(
            api.post(env_subscriptions(org.dev), json=body(str(uuid.uuid4()), str(uuid.uuid4()))),
            422,
        )
        assert [e["field"] for e in both["errors"]] == ["source.id", "destination.id"]
        assert api.get(env_subscriptions(org.dev)).json()["payload"]["subscriptions"] == []


def test_field_rules(org: Org) -> None:
    source = new_source(org, org.dev)
    destination = new_destination(org, org.dev)
    ok = body(source["id"], destination["id"])
    with org.client() as api:
        for given, field in (
            ({**ok, "dataModel": ""}, "dataModel"),
            ({**ok, "dataModel": "   "}, "dataModel"),
            ({**ok, "dataModel": "x" * 256}, "dataModel"),
            ({**ok, "dataModel": "Patient\nAdmin"}, "dataModel"),
            ({**ok, "dataModel": "Patient\x00Admin"}, "dataModel"),
            ({**ok, "dataModel": 7}, "dataModel"),
            ({k: v for k, v in ok.items() if k != "dataModel"}, "dataModel"),
            ({**ok, "source": {"id": "not-a-uuid"}}, "source.id"),
            ({**ok, "source": {}}, "source.id"),
            ({**ok, "destination": {"id": destination["id"], "name": "x"}}, "destination.name"),
            ({**ok, "filter": "x"}, "filter"),
        ):
            assert_invalid(api.post(env_subscriptions(org.dev), json=given), field)
        assert api.get(env_subscriptions(org.dev)).json()["payload"]["subscriptions"] == []
        longest = api.post(env_subscriptions(org.dev), json={**ok, "dataModel": "M" * 255})
        assert longest.status_code == 201, longest.text


def test_filters_and_paging(org: Org) -> None:
    first, second = new_source(org, org.dev, "one"), new_source(org, org.dev, "two")
    a, b = new_destination(org, org.dev, "a"), new_destination(org, org.dev, "b")
    made = [
        subscribe(org, org.dev, first["id"], a["id"], "PatientAdmin"),
        subscribe(org, org.dev, first["id"], b["id"], "Clinical Summary"),
        subscribe(org, org.dev, second["id"], a["id"], "ClinicalSummary"),
    ]
    ids = [s["id"] for s in made]

    def listed(**params: Any) -> list[str]:
        with org.client() as api:
            response = api.get(env_subscriptions(org.dev), params=params)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["payload"]["subscriptions"]]

    assert listed() == ids
    assert listed(sourceId=first["id"]) == ids[:2]
    assert listed(destinationId=a["id"]) == [ids[0], ids[2]]
    assert listed(dataModel="Clinical Summary") == ids[1:]
    assert listed(dataModel="ClinicalSummary", sourceId=second["id"]) == [ids[2]]
    assert listed(sourceId="not-a-uuid") == []
    assert listed(destinationId=str(uuid.uuid4())) == []

    seen: list[str] = []
    url: str | None = f"{env_subscriptions(org.dev)}?_count=2"
    with org.client() as api:
        while url is not None:
            page = api.get(url).json()
            seen += [s["id"] for s in page["payload"]["subscriptions"]]
            url = (page["meta"].get("links") or {}).get("next")
        assert seen == ids
        assert_invalid(api.get(env_subscriptions(org.dev), params={"_cursor": "nope"}), "_cursor")
        assert_invalid(api.get(env_subscriptions(org.dev), params={"_count": 0}), "_count")
        assert_invalid(
            api.get(env_subscriptions(org.dev), params={"dataModel": "a\x00b"}), "dataModel"
        )


def test_delete(org: Org) -> None:
    source = new_source(org, org.dev)
    destination = new_destination(org, org.dev)
    created = subscribe(org, org.dev, source["id"], destination["id"])
    with org.client() as api:
        deleted = api.delete(subscription_url(created["id"]))
        assert deleted.status_code == 200, deleted.text
        assert created["id"] in deleted.json()["payload"]["message"]
        assert_problem(api.get(subscription_url(created["id"])), 404)
        assert_problem(api.delete(subscription_url(created["id"])), 404)
        assert_problem(api.get(subscription_url("not-a-uuid")), 404)
    types = [e["type"] for e in audit_events(org, actionType="subscription-deleted")]
    assert types == ["subscription-deleted"]
    assert [e["type"] for e in audit_events(org, actionType="subscription-created")] == [
        "subscription-created"
    ]


def test_roles(org: Org, other_org: Org) -> None:
    source = new_source(org, org.dev)
    destination = new_destination(org, org.dev)
    created = subscribe(org, org.dev, source["id"], destination["id"])
    viewer = make_user(org, Development="viewer")
    support = make_user(org, Development="support")
    staging_only = make_user(org, Staging="engineer")
    for reader in (viewer, support):
        with org.client(reader.token) as api:
            assert api.get(subscription_url(created["id"])).status_code == 200
            assert len(api.get(env_subscriptions(org.dev)).json()["payload"]["subscriptions"]) == 1
            assert_problem(
                api.post(
                    env_subscriptions(org.dev),
                    json=body(source["id"], destination["id"], "Scheduling"),
                ),
                403,
            )
            assert_problem(api.delete(subscription_url(created["id"])), 403)
    with org.client(staging_only.token) as api:
        assert_problem(api.get(subscription_url(created["id"])), 404)
        assert_problem(api.get(env_subscriptions(org.dev)), 404)
        assert_problem(api.delete(subscription_url(created["id"])), 404)
        mine = api.get(f"{API}/organizations/{org.id}/subscriptions").json()
        assert mine["payload"]["subscriptions"] == []
    with other_org.client() as api:
        assert_problem(api.get(subscription_url(created["id"])), 404)
        assert_problem(api.get(f"{API}/organizations/{org.id}/subscriptions"), 404)
        assert_problem(
            api.post(env_subscriptions(org.dev), json=body(source["id"], destination["id"])), 404
        )
    with org.client() as api:
        assert api.get(subscription_url(created["id"])).status_code == 200
    refused = audit_events(org, actionType="subscription-deleted", status="failed")
    assert len(refused) == 2


def test_subscribed_destinations_for_routing(server: Server, org: Org) -> None:
    source = new_source(org, org.dev)
    other_source = new_source(org, org.dev)
    first, second, third = (new_destination(org, org.dev, n) for n in ("1", "2", "3"))
    subscribe(org, org.dev, source["id"], second["id"], "Clinical Summary")
    subscribe(org, org.dev, source["id"], first["id"], "ClinicalSummary")
    subscribe(org, org.dev, source["id"], third["id"], "PatientAdmin")
    subscribe(org, org.dev, other_source["id"], third["id"], "ClinicalSummary")

    async def routes(db: Database, data_model: str) -> list[str]:
        async with db.read() as conn:
            return await service.subscribed_destinations(
                conn, source_id=source["id"], data_model=data_model
            )

    expected = [second["id"], first["id"]]
    assert server.run(lambda db: routes(db, "Clinical Summary")) == expected
    assert server.run(lambda db: routes(db, "ClinicalSummary")) == expected
    assert server.run(lambda db: routes(db, "PatientAdmin")) == [third["id"]]
    assert server.run(lambda db: routes(db, "Scheduling")) == []
