"""The audit trail, over real HTTP on both backends: every write is recorded with who,
from where, through which route and what changed; refusals (403) are recorded as
`failed`; secrets appear only as "changed". Owners and admins search it, newest first,
with filters and offset paging.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.access_support import (
    API,
    User,
    assert_invalid,
    assert_problem,
    audit_events,
    audit_url,
    destination_url,
    env_destinations,
    env_roles_url,
    make_user,
    org_roles_url,
)
from tests.support import Org, Server, free_port
from waypost.auth import service as auth_service

CREATE_ROUTE = "POST /platform/v1/environments/{environmentId}/destinations"
PATCH_ROUTE = "PATCH /platform/v1/destinations/{destinationId}"
DELETE_ROUTE = "DELETE /platform/v1/destinations/{destinationId}"
EVENT_FIELDS = {
    "id",
    "organizationId",
    "userId",
    "requestIp",
    "route",
    "createdAt",
    "type",
    "status",
    "details",
}


def audit_response(org: Org, token: str | None = None, **params: Any) -> httpx.Response:
    with org.client(token) as api:
        return api.get(audit_url(org.id), params=params)


def assert_event_shape(event: dict[str, Any], org: Org) -> None:
    assert set(event) == EVENT_FIELDS, event
    assert str(uuid.UUID(event["id"])) == event["id"]
    assert event["organizationId"] == org.id
    assert type(event["organizationId"]) is int
    assert event["status"] in ("successful", "failed")
    assert isinstance(event["details"], dict)
    created = datetime.fromisoformat(event["createdAt"].replace("Z", "+00:00"))
    assert created.tzinfo is not None
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=10)


@dataclass
class Life:
    """A destination's life: created, updated, a refused update, deleted."""

    destination_id: str
    viewer: User
    secrets: tuple[str, ...]
    events: list[dict[str, Any]]  # newest first


def destination_life(org: Org) -> Life:
    viewer = make_user(org, "member", Development="viewer")
    first_token = f"first-secret-{uuid.uuid4().hex}"
    second_token = f"second-secret-{uuid.uuid4().hex}"
    refused_token = f"refused-secret-{uuid.uuid4().hex}"
    with org.client() as api:
        created = api.post(
            env_destinations(org.dev),
            json={
                "name": "first",
                "endpoint": "http://receiver.test/in",
                "verificationToken": first_token,
            },
        )
        assert created.status_code == 201, created.text
        destination_id: str = created.json()["payload"]["destination"]["id"]
        updated = api.patch(
            destination_url(destination_id),
            json={"name": "second", "verificationToken": second_token},
        )
        assert updated.status_code == 200, updated.text
    with org.client(viewer.token) as api:
        refused = api.patch(
            destination_url(destination_id),
            json={"name": "third", "verificationToken": refused_token},
        )
        assert_problem(refused, 403)
    with org.client() as api:
        deleted = api.delete(destination_url(destination_id))
        assert deleted.status_code == 200, deleted.text
    events = audit_events(org)
    return Life(destination_id, viewer, (first_token, second_token, refused_token), events)


@pytest.fixture
def life(org: Org) -> Life:
    return destination_life(org)


# --- what is recorded -----------------------------------------------------------------------


def test_a_destinations_life_is_recorded(org: Org, life: Life) -> None:
    assert [(e["type"], e["status"]) for e in life.events] == [
        ("destination-deleted", "successful"),
        ("destination-updated", "failed"),
        ("destination-updated", "successful"),
        ("destination-created", "successful"),
    ]
    deleted, refused, updated, created = life.events
    for event in life.events:
        assert_event_shape(event, org)
        assert event["requestIp"] == "127.0.0.1"
        assert event["details"]["destinationId"] == life.destination_id
    assert len({e["id"] for e in life.events}) == 4
    assert [e["createdAt"] for e in life.events] == sorted(
        (e["createdAt"] for e in life.events), reverse=True
    )

    assert created["userId"] == org.owner_id
    assert created["route"] == CREATE_ROUTE
    assert created["details"]["environmentId"] == org.dev
    fields = created["details"]["fields"]
    assert fields["name"]["new"] == "first"
    assert fields["endpoint"]["new"] == "http://receiver.test/in"
    assert fields["verificationToken"] == "changed"

    assert updated["userId"] == org.owner_id
    assert updated["route"] == PATCH_ROUTE
    assert updated["details"]["changes"] == {
        "name": {"old": "first", "new": "second"},
        "verificationToken": "changed",
    }

    assert refused["userId"] == life.viewer.id
    assert refused["route"] == PATCH_ROUTE
    assert refused["details"]["reason"]
    assert "third" not in str(refused["details"])

    assert deleted["userId"] == org.owner_id
    assert deleted["route"] == DELETE_ROUTE
    assert deleted["details"]["name"] == "second"


def test_secrets_never_appear_in_the_trail(org: Org, life: Life) -> None:
    text = audit_response(org).text
    for secret in life.secrets:
        assert secret not in text
    assert text.count('"verificationToken":"changed"') == 2


def test_only_changed_fields_are_listed(org: Org) -> None:
    with org.client() as api:
        created = api.post(
            env_destinations(org.dev), json={"name": "same", "endpoint": "http://a.test/"}
        )
        destination_id = created.json()["payload"]["destination"]["id"]
        patched = api.patch(
            destination_url(destination_id),
            json={"name": "same", "endpoint": "http://b.test/"},
        )
        assert patched.status_code == 200, patched.text
    updated = audit_events(org, actionType="destination-updated")
    assert [e["details"]["changes"] for e in updated] == [
        {"endpoint": {"old": "http://a.test/", "new": "http://b.test/"}}
    ]


def test_reads_are_not_recorded(org: Org) -> None:
    with org.client() as api:
        assert api.get(env_destinations(org.dev)).status_code == 200
        assert api.get(org_roles_url(org.id)).status_code == 200
        assert api.get(env_roles_url(org.dev)).status_code == 200
        assert api.get(f"{API}/organizations/{org.id}/environments").status_code == 200
        assert api.get(audit_url(org.id)).status_code == 200
    assert audit_events(org) == []


@pytest.mark.parametrize(
    ("action", "event_type"),
    [("create", "destination-created"), ("delete", "destination-deleted")],
)
def test_refused_writes_are_recorded_as_failed(org: Org, action: str, event_type: str) -> None:
    with org.client() as api:
        created = api.post(
            env_destinations(org.prod), json={"name": "p", "endpoint": "https://r.test/p"}
        )
        destination_id = created.json()["payload"]["destination"]["id"]
    if action == "create":
        user = make_user(org, "admin", Production="support")
        with org.client(user.token) as api:
            refused = api.post(
                env_destinations(org.prod), json={"name": "q", "endpoint": "https://r.test/q"}
            )
    else:
        # An engineer, but deleting in Production also needs owner or admin.
        user = make_user(org, "member", Production="engineer")
        with org.client(user.token) as api:
            refused = api.delete(destination_url(destination_id))
    assert_problem(refused, 403)
    failed = audit_events(org, status="failed")
    assert len(failed) == 1
    assert failed[0]["type"] == event_type
    assert failed[0]["userId"] == user.id
    assert failed[0]["requestIp"] == "127.0.0.1"
    assert failed[0]["details"]["reason"]
    # Nothing else was recorded for the refusal.
    assert [e["type"] for e in audit_events(org)] == [event_type, "destination-created"]


def test_hidden_destinations_leave_no_trace(org: Org, other_org: Org) -> None:
    """A caller without a role gets 404 for someone else's destination; the other
    organization's trail does not learn of it."""
    with org.client() as api:
        created = api.post(
            env_destinations(org.dev), json={"name": "n", "endpoint": "http://r.test/"}
        )
        destination_id = created.json()["payload"]["destination"]["id"]
    with other_org.client() as api:
        assert_problem(api.patch(destination_url(destination_id), json={"name": "x"}), 404)
    assert [e["type"] for e in audit_events(org)] == ["destination-created"]
    assert audit_events(other_org) == []


def test_verification_is_recorded(org: Org) -> None:
    secret = f"verify-secret-{uuid.uuid4().hex}"
    endpoint = f"http://127.0.0.1:{free_port()}/nobody-listens"
    with org.client() as api:
        created = api.post(env_destinations(org.dev), json={"name": "v", "endpoint": endpoint})
        destination_id = created.json()["payload"]["destination"]["id"]
        # No verification token yet: refused before any request goes out.
        missing = api.post(f"{API}/destinations/{destination_id}/verify")
        assert_invalid(missing, "verificationToken")
        # Nobody listens: the handshake fails.
        failed = api.post(
            f"{API}/destinations/{destination_id}/verify", json={"verificationToken": secret}
        )
        assert_problem(failed, 422)
    events = audit_events(org, actionType="destination-verified")
    assert [(e["status"], e["userId"]) for e in events] == [
        ("failed", org.owner_id),
        ("failed", org.owner_id),
    ]
    handshake, refused = events
    assert handshake["route"] == "POST /platform/v1/destinations/{destinationId}/verify"
    assert handshake["details"]["destinationId"] == destination_id
    assert handshake["details"]["changes"] == {"verificationToken": "changed"}
    assert handshake["details"]["endpoint"] == endpoint
    assert handshake["details"]["error"]
    assert refused["details"]["destinationId"] == destination_id
    assert "verificationToken" in refused["details"]["reason"]
    assert secret not in audit_response(org).text


class _ChallengeEcho(BaseHTTPRequestHandler):
    """A receiver that passes Redox's handshake: it answers the challenge it was sent."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"challenge": body["challenge"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def echo_receiver() -> Iterator[str]:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _ChallengeEcho)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{receiver.server_address[1]}/redox"
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(timeout=5)


def test_successful_verification_is_recorded(org: Org, echo_receiver: str) -> None:
    secret = f"verify-secret-{uuid.uuid4().hex}"
    with org.client() as api:
        created = api.post(env_destinations(org.dev), json={"name": "v", "endpoint": echo_receiver})
        destination_id = created.json()["payload"]["destination"]["id"]
        verified = api.post(
            f"{API}/destinations/{destination_id}/verify", json={"verificationToken": secret}
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["payload"]["destination"]["verified"] is True
    events = audit_events(org)
    assert [(e["type"], e["status"]) for e in events] == [
        ("destination-verified", "successful"),
        ("destination-created", "successful"),
    ]
    event = events[0]
    assert event["userId"] == org.owner_id
    assert event["requestIp"] == "127.0.0.1"
    assert event["route"] == "POST /platform/v1/destinations/{destinationId}/verify"
    assert event["details"]["destinationId"] == destination_id
    assert event["details"]["endpoint"] == echo_receiver
    assert event["details"]["method"] == "POST"
    assert event["details"]["changes"] == {"verificationToken": "changed"}
    assert "error" not in event["details"]
    assert secret not in audit_response(org).text


CLOUD = {
    "typeId": "azure",
    "productId": "databricks",
    "settings": {"storageAccountName": "acmedata", "containerName": "inbound"},
}


@pytest.mark.parametrize(
    ("create", "verify_body", "reason_word"),
    [
        ({"name": "cloud", "cloudProviderSettings": CLOUD}, {}, "cloud"),
        ({"name": "prod"}, {"endpoint": "http://x.test/"}, "https"),
    ],
    ids=["cloud-destination", "http-in-production"],
)
def test_refused_verification_is_recorded(
    org: Org, create: dict[str, Any], verify_body: dict[str, Any], reason_word: str
) -> None:
    with org.client() as api:
        created = api.post(env_destinations(org.prod), json=create)
        assert created.status_code == 201, created.text
        destination_id = created.json()["payload"]["destination"]["id"]
        refused = api.post(f"{API}/destinations/{destination_id}/verify", json=verify_body)
        assert refused.status_code == 422, refused.text
    event = audit_events(org)[0]
    assert (event["type"], event["status"]) == ("destination-verified", "failed")
    assert event["details"]["destinationId"] == destination_id
    assert reason_word in event["details"]["reason"]


def test_role_changes_are_recorded(org: Org) -> None:
    user = make_user(org, "member")
    admin = make_user(org, "admin")
    with org.client() as api:
        assert (
            api.put(
                org_roles_url(org.id), json={"role": {"name": "admin"}, "user": {"id": user.id}}
            ).status_code
            == 200
        )
    with org.client(admin.token) as api:
        body = {"role": {"name": "viewer"}, "user": {"id": user.id}}
        assert api.post(env_roles_url(org.staging), json=body).status_code == 200
        body = {"role": {"name": "engineer"}, "user": {"id": user.id}}
        assert api.put(env_roles_url(org.staging), json=body).status_code == 200
        removal = {"user": {"id": user.id}}
        assert api.request("DELETE", env_roles_url(org.staging), json=removal).status_code == 200
        # Admins may not change organization roles: refused, and recorded.
        promote = {"role": {"name": "owner"}, "user": {"id": admin.id}}
        assert_problem(api.put(org_roles_url(org.id), json=promote), 403)
    events = audit_events(org)
    assert [(e["type"], e["status"], e["userId"]) for e in events] == [
        ("organization-role-changed", "failed", admin.id),
        ("environment-role-removed", "successful", admin.id),
        ("environment-role-changed", "successful", admin.id),
        ("environment-role-assigned", "successful", admin.id),
        ("organization-role-changed", "successful", org.owner_id),
    ]
    refused, removed, changed, assigned, org_changed = events
    for event in events:
        assert_event_shape(event, org)
        assert event["requestIp"] == "127.0.0.1"
    assert org_changed["route"] == "PUT /platform/v1/organizations/{organizationId}/role-assignment"
    assert org_changed["details"]["userId"] == user.id
    assert org_changed["details"]["role"] == {"old": "member", "new": "admin"}
    env_route = "/platform/v1/environments/{environmentId}/role-assignment"
    assert assigned["route"] == f"POST {env_route}"
    assert changed["route"] == f"PUT {env_route}"
    assert removed["route"] == f"DELETE {env_route}"
    for event in (assigned, changed, removed):
        assert event["details"]["environmentId"] == org.staging
        assert event["details"]["userId"] == user.id
    assert assigned["details"]["role"] == {"old": None, "new": "viewer"}
    assert changed["details"]["role"] == {"old": "viewer", "new": "engineer"}
    assert removed["details"]["role"]["old"] == "engineer"
    assert removed["details"]["role"].get("new") is None
    assert refused["route"] == "PUT /platform/v1/organizations/{organizationId}/role-assignment"
    assert refused["details"]["reason"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_refused_environment_role_changes_are_recorded(org: Org, method: str) -> None:
    member = make_user(org, "member", Development="engineer")
    target = make_user(org, "member", Development="viewer")
    body: dict[str, Any] = {"user": {"id": target.id}}
    if method != "DELETE":
        body["role"] = {"name": "engineer"}
    with org.client(member.token) as api:
        assert_problem(api.request(method, env_roles_url(org.dev), json=body), 403)
    expected = {
        "POST": "environment-role-assigned",
        "PUT": "environment-role-changed",
        "DELETE": "environment-role-removed",
    }[method]
    events = audit_events(org)
    assert [(e["type"], e["status"], e["userId"]) for e in events] == [
        (expected, "failed", member.id)
    ]
    assert (
        events[0]["route"]
        == f"{method} /platform/v1/environments/{{environmentId}}/role-assignment"
    )


def test_cli_token_changes_are_recorded(server: Server, org: Org) -> None:
    issued = server.run(lambda db: auth_service.create_token(db, user_id=org.owner_id))
    token_id, token = issued.id, issued.token
    server.run(lambda db: auth_service.revoke_token(db, token_id=token_id))
    events = audit_events(org)
    assert [(e["type"], e["status"]) for e in events] == [
        ("api-token-revoked", "successful"),
        ("api-token-created", "successful"),
    ]
    revoked, created = events
    for event in events:
        assert_event_shape(event, org)
        assert event["userId"] is None  # made on the command line
        assert event["details"]["userId"] == org.owner_id
        assert event["details"]["tokenId"] == token_id
    assert created["route"] == "cli: waypost tokens create"
    assert revoked["route"] == "cli: waypost tokens revoke"
    assert token not in audit_response(org).text


def test_trails_do_not_mix_organizations(org: Org, other_org: Org, life: Life) -> None:
    assert audit_events(other_org) == []
    with other_org.client() as api:
        created = api.post(
            env_destinations(other_org.dev), json={"name": "o", "endpoint": "http://r.test/"}
        )
        assert created.status_code == 201
    assert [e["type"] for e in audit_events(other_org)] == ["destination-created"]
    assert len(audit_events(org)) == 4


# --- who may read it ------------------------------------------------------------------------


def test_admin_reads_the_trail(org: Org, life: Life) -> None:
    admin = make_user(org, "admin")
    response = audit_response(org, admin.token)
    assert response.status_code == 200, response.text
    assert response.json()["payload"]["results"] == life.events


@pytest.mark.parametrize("roles", [{}, {"Development": "engineer", "Production": "engineer"}])
def test_member_may_not_read_the_trail(org: Org, roles: dict[str, str]) -> None:
    member = make_user(org, "member", **roles)
    assert_problem(audit_response(org, member.token), 403)


def test_another_organizations_trail_is_404(org: Org, other_org: Org) -> None:
    with other_org.client() as api:
        foreign = api.get(audit_url(org.id))
        unknown = api.get(audit_url(10_000_000))
        malformed = api.get(audit_url("abc"))
    assert_problem(foreign, 404)
    assert_problem(unknown, 404)
    assert_problem(malformed, 404)
    assert foreign.json() == unknown.json()


def test_the_trail_needs_a_token(server: Server, org: Org) -> None:
    with server.client() as api:
        response = api.get(audit_url(org.id))
    assert_problem(response, 401)


# --- filters --------------------------------------------------------------------------------


def types_of(org: Org, **params: Any) -> list[tuple[str, str]]:
    return [(e["type"], e["status"]) for e in audit_events(org, **params)]


def test_filter_by_user(org: Org, life: Life) -> None:
    assert audit_events(org, userId=life.viewer.id) == [life.events[1]]
    assert types_of(org, userId=org.owner_id) == [
        ("destination-deleted", "successful"),
        ("destination-updated", "successful"),
        ("destination-created", "successful"),
    ]
    assert audit_events(org, userId=str(uuid.uuid4())) == []


def test_filter_by_status(org: Org, life: Life) -> None:
    assert audit_events(org, status="failed") == [life.events[1]]
    assert audit_events(org, status="successful") == [
        life.events[0],
        life.events[2],
        life.events[3],
    ]


def test_filter_by_action_types(org: Org, life: Life) -> None:
    assert types_of(org, actionType="destination-updated") == [
        ("destination-updated", "failed"),
        ("destination-updated", "successful"),
    ]
    both = audit_events(org, actionType=["destination-created", "destination-deleted"])
    assert both == [life.events[0], life.events[3]]
    assert audit_events(org, actionType="organization-role-changed") == []


def test_filters_combine(org: Org, life: Life) -> None:
    assert audit_events(
        org, actionType="destination-updated", status="successful", userId=org.owner_id
    ) == [life.events[2]]
    assert audit_events(org, actionType="destination-created", userId=life.viewer.id) == []


def test_filter_by_time_window(org: Org, life: Life) -> None:
    deleted, refused, updated, created = life.events
    assert audit_events(
        org, startDateTime=created["createdAt"], stopDateTime=updated["createdAt"]
    ) == [updated, created]
    assert audit_events(org, startDateTime=refused["createdAt"]) == [deleted, refused]
    assert audit_events(org, stopDateTime=created["createdAt"]) == [created]
    # The same instants, written with another offset.
    start = datetime.fromisoformat(updated["createdAt"].replace("Z", "+00:00"))
    in_paris = start.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert audit_events(org, startDateTime=in_paris, stopDateTime=refused["createdAt"]) == [
        refused,
        updated,
    ]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert audit_events(org, startDateTime=later) == []
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert audit_events(org, stopDateTime=earlier) == []
    assert audit_events(org, startDateTime=earlier, stopDateTime=later) == life.events


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("startDateTime", "yesterday"),
        ("startDateTime", "2026-01-10T19:46:40"),  # no time zone
        ("stopDateTime", "2026-13-40T00:00:00Z"),
        ("stopDateTime", ""),
    ],
)
@pytest.mark.backend_free
def test_bad_time_is_422(org: Org, name: str, value: str) -> None:
    assert_invalid(audit_response(org, **{name: value}), name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("stopDateTime", "9999-12-31T23:59:59-14:00"),  # after year 9999 in UTC
        ("startDateTime", "0001-01-01T00:00:00+14:00"),  # before year 1 in UTC
    ],
)
def test_times_at_the_edge_of_the_calendar_do_not_fail(
    org: Org, life: Life, name: str, value: str
) -> None:
    """Either every event (the window holds them all) or a 422; never a 500."""
    response = audit_response(org, **{name: value})
    if response.status_code == 200:
        assert response.json()["payload"]["results"] == life.events
    else:
        assert_invalid(response, name)


# --- paging ---------------------------------------------------------------------------------


def test_paging_follows_next_links(org: Org, life: Life) -> None:
    seen: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    with org.client() as api:
        url: str | None = f"{org.server.base_url}{audit_url(org.id)}?_count=2"
        while url is not None:
            response = api.get(url)
            assert response.status_code == 200, response.text
            body = response.json()
            page = body["meta"]["page"]
            pages.append(page)
            seen.extend(body["payload"]["results"])
            assert len(pages) <= 3
            url = page["links"].get("next")
    assert seen == life.events
    assert [p["currentPage"] for p in pages] == [1, 2]
    for page in pages:
        assert page["pageType"] == "offset"
        assert page["pageSize"] == 2
        assert page["links"]["self"].startswith(org.server.base_url)
    assert "next" in pages[0]["links"]
    assert "next" not in pages[1]["links"]


def test_page_meta_and_page_past_the_end(org: Org, life: Life) -> None:
    response = audit_response(org, _count=3, _page=2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["version"] == "1.0.0"
    assert body["payload"]["results"] == life.events[3:]
    page = body["meta"]["page"]
    assert {k: page[k] for k in ("currentPage", "pageType", "pageSize")} == {
        "currentPage": 2,
        "pageType": "offset",
        "pageSize": 3,
    }
    assert "next" not in page["links"]
    beyond = audit_response(org, _count=3, _page=5)
    assert beyond.status_code == 200
    assert beyond.json()["payload"]["results"] == []


def test_paging_keeps_the_filters(org: Org, life: Life) -> None:
    with org.client() as api:
        first = api.get(audit_url(org.id), params={"_count": 1, "userId": org.owner_id})
        assert first.status_code == 200
        next_url = first.json()["meta"]["page"]["links"]["next"]
        second = api.get(next_url)
    assert second.status_code == 200
    assert second.json()["payload"]["results"] == [life.events[2]]


@pytest.fixture
def many_events(org: Org) -> list[dict[str, Any]]:
    """More events than the largest page holds: 55 destinations created, newest first."""
    with org.client() as api:
        for n in range(55):
            made = api.post(env_destinations(org.dev), json={"name": f"d{n}"})
            assert made.status_code == 201, made.text
    events = [e for page in (1, 2) for e in audit_events(org, _count=50, _page=page)]
    assert len(events) >= 55
    return events


def test_default_page_size_is_fifty(org: Org, many_events: list[dict[str, Any]]) -> None:
    response = audit_response(org)
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["page"]["pageSize"] == 50
    assert body["meta"]["page"]["currentPage"] == 1
    assert body["payload"]["results"] == many_events[:50]
    following = audit_response(org, _page=2).json()
    assert following["payload"]["results"] == many_events[50:]


def test_fifty_is_the_largest_page(org: Org, many_events: list[dict[str, Any]]) -> None:
    response = audit_response(org, _count=50)
    assert response.status_code == 200
    assert response.json()["meta"]["page"]["pageSize"] == 50
    assert response.json()["payload"]["results"] == many_events[:50]
    assert "next" in response.json()["meta"]["page"]["links"]
    assert_invalid(audit_response(org, _count=51), "_count")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"_count": 51}, "_count"),
        ({"_count": 0}, "_count"),
        ({"_count": -1}, "_count"),
        ({"_count": "many"}, "_count"),
        ({"_page": 0}, "_page"),
        ({"_page": "x"}, "_page"),
    ],
)
@pytest.mark.backend_free
def test_bad_paging_is_422(org: Org, params: dict[str, Any], field: str) -> None:
    assert_invalid(audit_response(org, **params), field)
