"""Sources over the Platform API: create (the secret shown once), list, get, partial
update, delete, roles, field rules, the audit trail, and a secret kept only as a hash
and a sealed copy."""

from __future__ import annotations

import hashlib
import re
import uuid

from tests.access_support import assert_invalid, assert_problem, audit_events, make_user
from tests.sources.helpers import (
    create_source,
    env_sources,
    source_url,
    stored_source,
)
from tests.support import Org, sqlite_bytes

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_create_list_get_update_delete(org: Org) -> None:
    created = create_source(org, name="  Lab feed  ")
    assert UUID.fullmatch(created["id"])
    assert created["name"] == "Lab feed"
    assert created["environment"] == {"id": org.dev, "environmentFlag": "Development"}
    assert created["apiKey"] == created["id"]
    assert created["hasSecret"] is True
    assert len(created["secret"]) >= 64
    assert created["createdAt"] == created["updatedAt"]
    shown = {k: v for k, v in created.items() if k != "secret"}

    with org.client() as api:
        listed = api.get(env_sources(org.dev))
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"meta": {"version": "1.0.0"}, "payload": {"sources": [shown]}}
        got = api.get(source_url(created["id"]))
        assert got.json()["payload"]["source"] == shown  # the secret is never shown again

        unchanged = api.patch(source_url(created["id"]), json={})
        assert unchanged.json()["payload"]["source"] == shown
        renamed = api.patch(source_url(created["id"]), json={"name": "Lab feed 2"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["payload"]["source"]["name"] == "Lab feed 2"
        assert renamed.json()["payload"]["source"]["updatedAt"] >= created["updatedAt"]
        assert_invalid(api.patch(source_url(created["id"]), json={"name": None}), "name")
        assert_invalid(api.patch(source_url(created["id"]), json={"apiKey": "x"}), "apiKey")

        deleted = api.delete(source_url(created["id"]))
        assert deleted.status_code == 200, deleted.text
        assert created["id"] in deleted.json()["payload"]["message"]
        assert_problem(api.get(source_url(created["id"])), 404)
        assert api.get(env_sources(org.dev)).json()["payload"]["sources"] == []

    kinds = [(e["type"], e["status"]) for e in audit_events(org)]
    assert kinds[:3] == [
        ("source-deleted", "successful"),
        ("source-updated", "successful"),
        ("source-updated", "successful"),
    ]
    created_event = next(e for e in audit_events(org) if e["type"] == "source-created")
    assert created_event["details"]["fields"]["secret"] == "changed"
    assert created["secret"] not in str(audit_events(org))


def test_name_rules(org: Org) -> None:
    with org.client() as api:
        assert_invalid(api.post(env_sources(org.dev), json={}), "name")
        assert_invalid(api.post(env_sources(org.dev), json={"name": "   "}), "name")
        assert_invalid(api.post(env_sources(org.dev), json={"name": "x" * 256}), "name")
        assert_invalid(api.post(env_sources(org.dev), json={"name": "a\nb"}), "name")
        assert_invalid(api.post(env_sources(org.dev), json={"name": "a", "secret": "s"}), "secret")
        malformed = api.post(
            env_sources(org.dev), content=b"{", headers={"Content-Type": "application/json"}
        )
        assert_problem(malformed, 400)
        assert_problem(api.post(env_sources(str(uuid.uuid4())), json={"name": "a"}), 404)
        assert_problem(api.post(env_sources("not-a-uuid"), json={"name": "a"}), 404)
        assert_problem(api.get(source_url("not-a-uuid")), 404)


def test_roles(org: Org, other_org: Org) -> None:
    source = create_source(org)
    viewer = make_user(org, Development="viewer")
    support = make_user(org, Development="support")
    engineer = make_user(org, Development="engineer")
    outsider = make_user(org, Production="engineer")

    with org.client(viewer.token) as api:
        assert api.get(env_sources(org.dev)).status_code == 200
        assert api.get(source_url(source["id"])).status_code == 200
        assert_problem(api.post(env_sources(org.dev), json={"name": "x"}), 403)
        assert_problem(api.patch(source_url(source["id"]), json={"name": "x"}), 403)
        assert_problem(api.post(f"{source_url(source['id'])}/secret"), 403)
        assert_problem(api.delete(source_url(source["id"])), 403)
    with org.client(support.token) as api:
        assert_problem(api.delete(source_url(source["id"])), 403)
    for token in (outsider.token, other_org.owner_token):
        with org.client(token) as api:
            assert_problem(api.get(env_sources(org.dev)), 404)
            assert_problem(api.get(source_url(source["id"])), 404)
            assert_problem(api.patch(source_url(source["id"]), json={"name": "x"}), 404)
            assert_problem(api.delete(source_url(source["id"])), 404)
    with org.client(engineer.token) as api:
        made = api.post(env_sources(org.dev), json={"name": "Engineer's"})
        assert made.status_code == 201, made.text
        assert api.patch(source_url(source["id"]), json={"name": "y"}).status_code == 200
        assert api.post(f"{source_url(source['id'])}/secret").status_code == 200
        assert api.delete(source_url(source["id"])).status_code == 200
    with org.client("not-a-token") as api:
        assert_problem(api.get(env_sources(org.dev)), 401)

    refused = [e for e in audit_events(org) if e["status"] == "failed"]
    assert {e["type"] for e in refused} >= {
        "source-created",
        "source-updated",
        "source-secret-rotated",
        "source-deleted",
    }


def test_secret_is_kept_only_as_a_hash_and_sealed(org: Org) -> None:
    source = create_source(org)
    secret = source["secret"]
    row = stored_source(org.server, source["id"])
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["secret_sealed"].startswith("v1:")
    assert all(secret not in str(value) for value in row.values())
    if org.server.backend == "sqlite":
        assert secret.encode() not in sqlite_bytes(org.server)
