"""POST /platform/v1/destinations/{id}/verify over real HTTP, on both backends.

Every receiver is a real HTTP server on loopback (the shared test servers let loopback
through the outbound guard, and give up on a receiver after 2 s).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

import waypost
from tests.receivers import (
    Reply,
    Seen,
    TlsFiles,
    challenge_reply,
    fixed_reply,
    is_uuid4,
    make_tls_files,
    receiving,
    unused_url,
)
from tests.support import Org

API = "/platform/v1"
PROBLEM_JSON = "application/problem+json"
UNSPECIFIED = "0.0.0.0"  # noqa: S104 - a target, not a bind address


# --- helpers ------------------------------------------------------------------------------


def new_token() -> str:
    return f"vt-{uuid.uuid4().hex}"


def create(api: httpx.Client, env_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "dest", **fields}
    created = api.post(f"{API}/environments/{env_id}/destinations", json=body)
    assert created.status_code == 201, created.text
    destination: dict[str, Any] = created.json()["payload"]["destination"]
    return destination


def verify(api: httpx.Client, destination_id: str, body: Any = None) -> httpx.Response:
    url = f"{API}/destinations/{destination_id}/verify"
    if body is None:
        return api.post(url)
    return api.post(url, json=body)


def fetch(api: httpx.Client, destination_id: str) -> dict[str, Any]:
    got = api.get(f"{API}/destinations/{destination_id}")
    assert got.status_code == 200, got.text
    destination: dict[str, Any] = got.json()["payload"]["destination"]
    return destination


def assert_timestamp(value: object) -> None:
    assert isinstance(value, str)
    datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_verified(answer: httpx.Response, method: str) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    destination: dict[str, Any] = answer.json()["payload"]["destination"]
    assert destination["verified"] is True
    verification = destination["verification"]
    assert set(verification) == {"status", "checkedAt", "method"}
    assert verification["status"] == "verified"
    assert verification["method"] == method
    assert_timestamp(verification["checkedAt"])
    return destination


def assert_failed(
    api: httpx.Client, answer: httpx.Response, field: str, *words: str
) -> tuple[str, dict[str, Any]]:
    """A 422 problem naming `field`, whose detail holds every word; then the stored failure.
    Returns the detail and the destination as a following GET shows it."""
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    problem = answer.json()
    assert problem["status"] == 422
    detail: str = problem["detail"]
    for word in words:
        assert word.lower() in detail.lower(), detail
    assert [e["field"] for e in problem["errors"]] == [field], problem
    destination_id = answer.request.url.path.split("/")[-2]
    stored = fetch(api, destination_id)
    assert stored["verified"] is False
    verification = stored["verification"]
    assert verification is not None
    assert verification["status"] == "failed"
    assert_timestamp(verification["checkedAt"])
    assert isinstance(verification["error"], str) and verification["error"]
    assert verification["error"] in detail
    return detail, stored


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def api(org: Org) -> Iterator[httpx.Client]:
    with org.client() as client:
        yield client


# --- success --------------------------------------------------------------------------------


def test_post_handshake_is_sent_exactly_as_redox_sends_it(org: Org, api: httpx.Client) -> None:
    token = new_token()
    with receiving(challenge_reply("json", token=token)) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url_for("hook/in"), verificationToken=token)
        answer = verify(api, dest["id"])
        destination = assert_verified(answer, "POST")
        [seen] = receiver.seen
    assert destination["id"] == dest["id"]
    assert destination["verificationMethod"] == "POST"
    assert seen.method == "POST"
    assert seen.path == "/hook/in"
    assert seen.raw_query == ""
    assert seen.headers["content-type"].startswith("application/json")
    body = seen.json()
    assert set(body) == {"verification-token", "challenge"}
    assert body["verification-token"] == token
    assert is_uuid4(body["challenge"])
    assert seen.headers["verification-token"] == token
    user_agent = seen.headers["user-agent"]
    assert "Waypost" in user_agent and waypost.__version__ in user_agent
    stored = fetch(api, dest["id"])
    assert stored["verified"] is True
    assert stored["verification"] == destination["verification"]


def test_get_handshake_appends_query_to_existing_query(org: Org, api: httpx.Client) -> None:
    token = new_token()
    with receiving(challenge_reply("json", token=token)) as receiver:
        dest = create(
            api, org.dev, endpoint=receiver.url_for("in?source=x"), verificationToken=token
        )
        answer = verify(api, dest["id"], {"verificationMethod": "GET"})
        destination = assert_verified(answer, "GET")
        [seen] = receiver.seen
    assert destination["verificationMethod"] == "GET"
    assert seen.method == "GET"
    assert seen.path == "/in"
    assert seen.raw_query.startswith("source=x&")
    query = seen.query
    assert query["source"] == ["x"]
    assert query["verification-token"] == [token]
    assert len(query["challenge"]) == 1 and is_uuid4(query["challenge"][0])
    assert set(query) == {"source", "challenge", "verification-token"}
    assert seen.body == b""
    assert seen.headers["verification-token"] == token
    user_agent = seen.headers["user-agent"]
    assert "Waypost" in user_agent and waypost.__version__ in user_agent
    assert fetch(api, dest["id"])["verificationMethod"] == "GET"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_token_with_url_special_characters_arrives_intact(
    org: Org, api: httpx.Client, method: str
) -> None:
    token = "a&b=c+d%20e#f?g/h"
    with receiving(challenge_reply(token=token)) as receiver:
        dest = create(
            api, org.dev, endpoint=receiver.url_for("in?source=x"), verificationToken=token
        )
        assert_verified(verify(api, dest["id"], {"verificationMethod": method}), method)
        [seen] = receiver.seen
    assert seen.headers["verification-token"] == token
    if method == "GET":
        assert seen.query["verification-token"] == [token]
        assert seen.query["source"] == ["x"]
    else:
        assert seen.json()["verification-token"] == token


def test_get_handshake_without_existing_query(org: Org, api: httpx.Client) -> None:
    token = new_token()
    with receiving(challenge_reply("alone")) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url_for("plain"), verificationToken=token)
        assert_verified(verify(api, dest["id"], {"verificationMethod": "GET"}), "GET")
        [seen] = receiver.seen
    assert seen.path == "/plain"
    assert set(seen.query) == {"challenge", "verification-token"}
    assert seen.query["verification-token"] == [token]


def test_method_is_remembered_and_post_is_the_default(org: Org, api: httpx.Client) -> None:
    token = new_token()
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=token)
        assert dest["verificationMethod"] is None
        assert_verified(verify(api, dest["id"], {"verificationMethod": "GET"}), "GET")
        # No method given: the saved one is used again.
        assert_verified(verify(api, dest["id"]), "GET")
        assert_verified(verify(api, dest["id"], {"verificationMethod": "POST"}), "POST")
        methods = [s.method for s in receiver.seen]
    assert methods == ["GET", "GET", "POST"]


def test_challenge_differs_between_calls(org: Org, api: httpx.Client) -> None:
    token = new_token()
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=token)
        for _ in range(3):
            assert_verified(verify(api, dest["id"]), "POST")
        assert_verified(verify(api, dest["id"], {"verificationMethod": "GET"}), "GET")
        challenges = [s.challenge() for s in receiver.seen]
    assert len(challenges) == 4
    assert all(is_uuid4(c) for c in challenges)
    assert len(set(challenges)) == 4


@pytest.mark.parametrize("style", ["alone", "json", "anywhere"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_challenge_accepted_alone_as_json_or_anywhere(
    org: Org, api: httpx.Client, style: str, method: str
) -> None:
    with receiving(challenge_reply(style)) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        assert_verified(verify(api, dest["id"], {"verificationMethod": method}), method)
        assert len(receiver.seen) == 1


@pytest.mark.parametrize("status", [200, 201, 202])
def test_any_2xx_with_the_challenge_is_success(org: Org, api: httpx.Client, status: int) -> None:
    def respond(seen: Seen) -> Reply:
        return Reply(status, (seen.challenge() or "").encode())

    with receiving(respond) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        answer = verify(api, dest["id"])
    assert_verified(answer, "POST")


@pytest.mark.parametrize("body", [None, {}])
def test_no_body_or_empty_body_uses_the_saved_fields(
    org: Org, api: httpx.Client, body: dict[str, Any] | None
) -> None:
    token = new_token()
    with receiving(challenge_reply(token=token)) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=token)
        assert_verified(verify(api, dest["id"], body), "POST")
        assert len(receiver.seen) == 1


def test_given_fields_are_saved_then_used(org: Org, api: httpx.Client) -> None:
    token = new_token()
    with receiving(challenge_reply(token=token)) as receiver:
        dest = create(api, org.dev, name="only a name")
        answer = verify(
            api,
            dest["id"],
            {"endpoint": receiver.url, "verificationToken": token, "verificationMethod": "GET"},
        )
        destination = assert_verified(answer, "GET")
        [seen] = receiver.seen
    assert seen.method == "GET"
    assert seen.headers["verification-token"] == token
    assert destination["endpoint"] == receiver.url
    assert destination["hasVerificationToken"] is True
    stored = fetch(api, dest["id"])
    assert stored["endpoint"] == receiver.url
    assert stored["hasVerificationToken"] is True
    assert stored["verificationMethod"] == "GET"
    assert stored["name"] == "only a name"


def test_body_overrides_the_saved_endpoint_and_token(org: Org, api: httpx.Client) -> None:
    old_token, new = new_token(), new_token()
    with receiving(challenge_reply(token=new)) as good, receiving() as old:
        dest = create(api, org.dev, endpoint=old.url, verificationToken=old_token)
        assert_verified(
            verify(api, dest["id"], {"endpoint": good.url, "verificationToken": new}), "POST"
        )
        assert old.seen == []
        assert [s.headers["verification-token"] for s in good.seen] == [new]
        # The new values were saved: a bare verify uses them again.
        assert_verified(verify(api, dest["id"]), "POST")
        assert len(good.seen) == 2
    assert fetch(api, dest["id"])["endpoint"] == good.url


def test_fields_given_are_saved_even_when_verification_fails(org: Org, api: httpx.Client) -> None:
    dest = create(api, org.dev)
    endpoint = unused_url()
    answer = verify(
        api,
        dest["id"],
        {"endpoint": endpoint, "verificationToken": new_token(), "verificationMethod": "GET"},
    )
    _detail, stored = assert_failed(api, answer, "endpoint", "refused")
    assert stored["endpoint"] == endpoint
    assert stored["hasVerificationToken"] is True
    assert stored["verificationMethod"] == "GET"
    assert stored["verification"]["method"] == "GET"


# --- missing fields ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, {}, {"verificationMethod": "GET"}])
def test_both_missing_are_named(org: Org, api: httpx.Client, body: dict[str, Any] | None) -> None:
    dest = create(api, org.dev, name="only a name")
    answer = verify(api, dest["id"], body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    problem = answer.json()
    assert sorted(e["field"] for e in problem["errors"]) == ["endpoint", "verificationToken"]
    assert "endpoint" in problem["detail"] and "verificationToken" in problem["detail"]
    stored = fetch(api, dest["id"])
    assert stored["verified"] is False
    assert stored["verification"] is None


def test_missing_token_is_named_alone(org: Org, api: httpx.Client) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url)
        answer = verify(api, dest["id"])
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["verificationToken"]
        assert receiver.seen == []


def test_missing_endpoint_is_named_alone_and_given_token_is_saved(
    org: Org, api: httpx.Client
) -> None:
    dest = create(api, org.dev)
    answer = verify(api, dest["id"], {"verificationToken": new_token()})
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["endpoint"]
    stored = fetch(api, dest["id"])
    assert stored["hasVerificationToken"] is True
    assert stored["verified"] is False
    assert stored["verification"] is None


def test_given_endpoint_is_saved_when_the_token_is_missing(org: Org, api: httpx.Client) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev)
        answer = verify(api, dest["id"], {"endpoint": receiver.url})
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["verificationToken"]
        assert receiver.seen == []
    assert fetch(api, dest["id"])["endpoint"] == receiver.url


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"verificationMethod": "PUT"}, "verificationMethod"),
        ({"verificationMethod": "get"}, "verificationMethod"),
        ({"endpoint": "ftp://example.test/"}, "endpoint"),
        ({"verificationToken": "has space"}, "verificationToken"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_body_is_refused_before_anything_is_sent(
    org: Org, api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        answer = verify(api, dest["id"], body)
        assert answer.status_code == 422, answer.text
        assert field in [e["field"] for e in answer.json()["errors"]]
        assert receiver.seen == []
    stored = fetch(api, dest["id"])
    assert stored["endpoint"] == receiver.url
    assert stored["verificationMethod"] is None
    assert stored["verification"] is None


# --- failures -----------------------------------------------------------------------------


def test_dns_failure(org: Org, api: httpx.Client) -> None:
    dest = create(
        api, org.dev, endpoint="http://no-such-host.invalid/", verificationToken=new_token()
    )
    detail, _ = assert_failed(api, verify(api, dest["id"]), "endpoint", "no-such-host.invalid")
    assert "resolve" in detail.lower(), detail
    assert "refused" not in detail.lower()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_connection_refused(org: Org, api: httpx.Client, method: str) -> None:
    dest = create(api, org.dev, endpoint=unused_url(), verificationToken=new_token())
    answer = verify(api, dest["id"], {"verificationMethod": method})
    detail, stored = assert_failed(api, answer, "endpoint", "refused")
    assert "guard" not in detail.lower()
    assert "resolve" not in detail.lower()
    assert stored["verification"]["method"] == method


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_certificate_not_trusted(
    org: Org, api: httpx.Client, tls_files: TlsFiles, host: str
) -> None:
    with receiving(ssl_context=tls_files.server_context()) as receiver:
        dest = create(
            api, org.dev, endpoint=receiver.url_for("", host=host), verificationToken=new_token()
        )
        detail, _ = assert_failed(api, verify(api, dest["id"]), "endpoint", "TLS", "certificate")
        assert receiver.seen == []  # the handshake failed: no HTTP request got through
    assert "refused" not in detail.lower()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_timeout(org: Org, api: httpx.Client, method: str) -> None:
    def slow(seen: Seen) -> Reply:
        return Reply(200, (seen.challenge() or "").encode(), delay=3.5)

    with receiving(slow) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        started = time.monotonic()
        answer = verify(api, dest["id"], {"verificationMethod": method})
        elapsed = time.monotonic() - started
        detail, _ = assert_failed(api, answer, "endpoint")
        assert len(receiver.seen) == 1
    lowered = detail.lower()
    assert any(w in lowered for w in ("timed out", "timeout", "within")), detail
    assert "2 s" in detail or "2s" in detail or "2.0" in detail, detail
    assert 1.5 <= elapsed < 3.4, elapsed


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(org: Org, api: httpx.Client, status: int) -> None:
    with receiving() as target:
        with receiving(fixed_reply(status, b"", Location=target.url)) as redirector:
            dest = create(api, org.dev, endpoint=redirector.url, verificationToken=new_token())
            detail, _ = assert_failed(api, verify(api, dest["id"]), "endpoint", "redirect")
            assert len(redirector.seen) == 1
        assert target.seen == []
    assert str(status) in detail


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_non_2xx_status(org: Org, api: httpx.Client, method: str) -> None:
    def broken(seen: Seen) -> Reply:
        return Reply(500, json.dumps({"challenge": seen.challenge()}).encode())

    with receiving(broken) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        answer = verify(api, dest["id"], {"verificationMethod": method})
        assert_failed(api, answer, "endpoint", "500")
        assert len(receiver.seen) == 1


@pytest.mark.parametrize("status", [400, 404, 503])
def test_other_error_statuses_are_reported(org: Org, api: httpx.Client, status: int) -> None:
    with receiving(fixed_reply(status, b"{}")) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        assert_failed(api, verify(api, dest["id"]), "endpoint", str(status))


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_token_rejected_by_the_receiver(org: Org, api: httpx.Client, method: str) -> None:
    with receiving(challenge_reply(token="the-receivers-token")) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        answer = verify(api, dest["id"], {"verificationMethod": method})
        assert_failed(api, answer, "verificationToken", "token", "401")
        assert len(receiver.seen) == 1


def test_token_rejected_with_403(org: Org, api: httpx.Client) -> None:
    with receiving(fixed_reply(403, b"{}")) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        assert_failed(api, verify(api, dest["id"]), "verificationToken", "token", "403")


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_challenge_missing_from_the_answer(org: Org, api: httpx.Client, method: str) -> None:
    def wrong(_seen: Seen) -> Reply:
        return Reply(200, json.dumps({"challenge": str(uuid.uuid4())}).encode())

    with receiving(wrong) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        answer = verify(api, dest["id"], {"verificationMethod": method})
        assert_failed(api, answer, "endpoint", "challenge")
        assert len(receiver.seen) == 1


def test_answer_is_read_up_to_64_kib_only(org: Org, api: httpx.Client) -> None:
    def huge(seen: Seen) -> Reply:
        return Reply(200, b"x" * (10 * 1024 * 1024) + (seen.challenge() or "").encode())

    with receiving(huge) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        started = time.monotonic()
        answer = verify(api, dest["id"])
        elapsed = time.monotonic() - started
        assert_failed(api, answer, "endpoint", "challenge")
        assert len(receiver.seen) == 1
    assert elapsed < 1.9, elapsed  # it did not wait for the rest, nor time out


def test_challenge_just_inside_64_kib_is_found(org: Org, api: httpx.Client) -> None:
    def padded(seen: Seen) -> Reply:
        challenge = (seen.challenge() or "").encode()
        return Reply(200, b"x" * (64 * 1024 - len(challenge)) + challenge + b"y" * 100_000)

    with receiving(padded) as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        assert_verified(verify(api, dest["id"]), "POST")


def test_failure_after_success_marks_it_unverified(org: Org, api: httpx.Client) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        assert_verified(verify(api, dest["id"]), "POST")
        receiver.responder = fixed_reply(500)
        assert_failed(api, verify(api, dest["id"]), "endpoint", "500")
        receiver.responder = challenge_reply()
        assert_verified(verify(api, dest["id"]), "POST")
    assert fetch(api, dest["id"])["verified"] is True


def test_a_cloud_destination_without_a_credential_is_not_verifiable(
    org: Org, api: httpx.Client
) -> None:
    """The probe writes to the container, which needs a credential; the URL handshake's
    fields mean nothing here. (tests/blob verifies cloud destinations against Azurite.)"""
    cloud = {
        "typeId": "azure",
        "productId": "databricks",
        "settings": {"storageAccountName": "acct2026", "containerName": "exports"},
    }
    dest = create(api, org.dev, cloudProviderSettings=cloud, verificationToken=new_token())
    for body, field in (
        (None, "authCredential"),
        ({}, "authCredential"),
        ({"verificationMethod": "GET"}, "verificationMethod"),
    ):
        answer = verify(api, dest["id"], body)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM_JSON)
        assert [e["field"] for e in answer.json()["errors"]] == [field]
    stored = fetch(api, dest["id"])
    assert stored["verified"] is False
    assert stored["verification"] is None
    assert stored["verificationMethod"] is None


def test_target_refused_by_the_guard(org: Org, api: httpx.Client) -> None:
    # The shared server lets loopback through, not the unspecified address (which Linux
    # would route to loopback, so a receiver listens there to catch a leak).
    with receiving() as receiver:
        endpoint = f"http://{UNSPECIFIED}:{receiver.port}/"
        dest = create(api, org.dev, endpoint=endpoint, verificationToken=new_token())
        assert_failed(api, verify(api, dest["id"]), "endpoint", "guard", UNSPECIFIED)
        assert receiver.seen == []


# --- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_readers_get_403(org: Org, api: httpx.Client, role: str) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        token = org.user(org_role="member", Development=role)
        with org.client(token) as reader:
            assert reader.get(f"{API}/destinations/{dest['id']}").status_code == 200
            for body in (None, {"endpoint": "http://127.0.0.1:1/"}):
                answer = verify(reader, dest["id"], body)
                assert answer.status_code == 403, answer.text
                assert answer.headers["content-type"].startswith(PROBLEM_JSON)
        assert receiver.seen == []
    stored = fetch(api, dest["id"])
    assert stored["endpoint"] == receiver.url
    assert stored["verification"] is None


@pytest.mark.parametrize("org_role", ["member", "admin", "owner"])
def test_no_role_in_the_environment_gets_404(org: Org, api: httpx.Client, org_role: str) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        token = org.user(org_role=org_role, Staging="engineer")
        with org.client(token) as outsider:
            answer = verify(outsider, dest["id"])
            assert answer.status_code == 404, answer.text
            assert answer.headers["content-type"].startswith(PROBLEM_JSON)
        assert receiver.seen == []
    assert fetch(api, dest["id"])["verification"] is None


def test_other_organization_gets_404(org: Org, other_org: Org, api: httpx.Client) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        with other_org.client() as stranger:
            answer = verify(stranger, dest["id"], {"endpoint": receiver.url})
            assert answer.status_code == 404, answer.text
        assert receiver.seen == []
    assert fetch(api, dest["id"])["verification"] is None


def test_engineer_may_verify(org: Org, api: httpx.Client) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        token = org.user(org_role="member", Development="engineer")
        with org.client(token) as engineer:
            assert_verified(verify(engineer, dest["id"]), "POST")


def test_unknown_destination_gets_404(api: httpx.Client) -> None:
    answer = verify(api, str(uuid.uuid4()))
    assert answer.status_code == 404, answer.text


def test_no_bearer_token_gets_401(org: Org, api: httpx.Client) -> None:
    dest = create(api, org.dev, endpoint=unused_url(), verificationToken=new_token())
    with httpx.Client(base_url=str(api.base_url)) as anonymous:
        assert verify(anonymous, dest["id"]).status_code == 401


# --- changes after verification ---------------------------------------------------------------


@pytest.mark.parametrize("field", ["endpoint", "verificationToken"])
def test_patching_address_or_token_clears_verification(
    org: Org, api: httpx.Client, field: str
) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        assert_verified(verify(api, dest["id"]), "POST")
        value = receiver.url_for("other") if field == "endpoint" else new_token()
        patched = api.patch(f"{API}/destinations/{dest['id']}", json={field: value})
        assert patched.status_code == 200, patched.text
        shown = patched.json()["payload"]["destination"]
        assert shown["verified"] is False
        assert shown["verification"] is None
        stored = fetch(api, dest["id"])
        assert stored["verified"] is False
        assert stored["verification"] is None


def test_patching_the_name_keeps_it_verified(org: Org, api: httpx.Client) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        verification = assert_verified(verify(api, dest["id"]), "POST")["verification"]
        patched = api.patch(f"{API}/destinations/{dest['id']}", json={"name": "renamed"})
        assert patched.status_code == 200, patched.text
        shown = patched.json()["payload"]["destination"]
        assert shown["verified"] is True
        assert shown["verification"] == verification
        stored = fetch(api, dest["id"])
        assert stored["name"] == "renamed"
        assert stored["verified"] is True
        assert stored["verification"] == verification


def test_verify_with_a_new_endpoint_that_fails_clears_an_earlier_success(
    org: Org, api: httpx.Client
) -> None:
    with receiving() as receiver:
        dest = create(api, org.dev, endpoint=receiver.url, verificationToken=new_token())
        assert_verified(verify(api, dest["id"]), "POST")
    assert_failed(api, verify(api, dest["id"], {"endpoint": unused_url()}), "endpoint", "refused")


# --- the token stays inside -------------------------------------------------------------------


def test_verification_token_never_appears_in_any_response(org: Org, api: httpx.Client) -> None:
    token, second = new_token(), new_token()
    texts: list[str] = []

    def keep(answer: httpx.Response) -> httpx.Response:
        texts.append(answer.text)
        texts.append(json.dumps(dict(answer.headers)))
        return answer

    def echo_everything(seen: Seen) -> Reply:
        # A receiver that echoes all it got, token included: it must not come back to us.
        everything = {
            "challenge": seen.challenge(),
            "query": seen.raw_query,
            "headers": seen.headers,
            "body": seen.body.decode(),
        }
        return Reply(200, json.dumps(everything).encode())

    with receiving(echo_everything) as receiver:
        created = keep(
            api.post(
                f"{API}/environments/{org.dev}/destinations",
                json={"name": "secret", "endpoint": receiver.url, "verificationToken": token},
            )
        )
        dest_id = created.json()["payload"]["destination"]["id"]
        assert created.json()["payload"]["destination"]["hasVerificationToken"] is True
        assert keep(verify(api, dest_id)).status_code == 200
        get_answer = keep(verify(api, dest_id, {"verificationMethod": "GET"}))
        assert get_answer.status_code == 200
        keep(api.get(f"{API}/destinations/{dest_id}"))
        keep(api.get(f"{API}/environments/{org.dev}/destinations"))
        receiver.responder = fixed_reply(401)
        assert keep(verify(api, dest_id)).status_code == 422
        receiver.responder = fixed_reply(302, b"", Location=receiver.url_for("?x=1"))
        assert keep(verify(api, dest_id, {"verificationMethod": "GET"})).status_code == 422
        keep(api.get(f"{API}/destinations/{dest_id}"))
        keep(api.patch(f"{API}/destinations/{dest_id}", json={"verificationToken": second}))
        assert keep(verify(api, dest_id, {"verificationToken": token})).status_code == 422
        assert keep(verify(api, dest_id, {"verificationToken": second})).status_code == 422
        keep(api.get(f"{API}/destinations/{dest_id}"))
    for text in texts:
        assert token not in text
        assert second not in text


def test_sending_the_same_endpoint_and_token_again_keeps_verified(
    org: Org, api: httpx.Client
) -> None:
    token = new_token()
    with receiving(challenge_reply(token=token)) as receiver:
        destination = create(api, org.dev, endpoint=receiver.url, verificationToken=token)
        assert verify(api, destination["id"]).status_code == 200
        same = api.patch(
            f"{API}/destinations/{destination['id']}",
            json={"endpoint": receiver.url, "verificationToken": token},
        )
        assert same.status_code == 200, same.text
        assert same.json()["payload"]["destination"]["verified"] is True
        changed = api.patch(
            f"{API}/destinations/{destination['id']}", json={"verificationToken": new_token()}
        )
        assert changed.json()["payload"]["destination"]["verified"] is False
