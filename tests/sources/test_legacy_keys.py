"""Legacy API keys, Redox's way: /auth/authenticate and /auth/refreshToken, 24-hour
tokens for the send API only, single-use refresh tokens, and secret rotation with a
24-hour grace period (tested by writing the expiry into the past, not by waiting)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
from tests.access_support import assert_problem, audit_events
from tests.sources.helpers import (
    API,
    authenticate,
    create_apikey,
    create_source,
    expire_tokens,
    new_ec384,
    public_jwk,
    sending_source,
    set_source_columns,
    source_url,
)
from tests.support import Org

REDOX_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_authenticate_and_send_token(org: Org) -> None:
    source = create_source(org)
    answer = authenticate(org.server, source["apiKey"], source["secret"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"accessToken", "expires", "refreshToken"}
    assert REDOX_TIME.fullmatch(body["expires"]), body["expires"]
    expires = datetime.fromisoformat(body["expires"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)

    sending = sending_source(org.server, body["accessToken"])
    assert sending is not None
    assert (sending.id, sending.name, sending.environment_id) == (
        source["id"],
        source["name"],
        org.dev,
    )
    assert (sending.environment_flag, sending.organization_id) == ("Development", org.id)
    # A refresh token is no access token, and a Platform API token is not a source's.
    assert sending_source(org.server, body["refreshToken"]) is None
    assert sending_source(org.server, org.owner_token) is None

    # The Platform API looks in its own table: a source token does not open it.
    with org.client(body["accessToken"]) as api:
        assert_problem(api.get(f"{API}/organizations/{org.id}/environments"), 401)
        assert_problem(api.get(source_url(source["id"])), 401)

    expire_tokens(org.server, source["id"])
    assert sending_source(org.server, body["accessToken"]) is None
    assert any(e["type"] == "source-token-issued" for e in audit_events(org))


def test_authenticate_refusals(org: Org) -> None:
    source = create_source(org)
    oauth_key = create_apikey(
        org, {"name": "JWKS", "jwkSet": {"keys": [public_jwk(new_ec384(), "k1")]}}
    )
    server = org.server
    assert_problem(authenticate(server, source["apiKey"], source["secret"] + "x"), 401)
    assert_problem(authenticate(server, oauth_key["id"], source["secret"]), 401)
    assert_problem(authenticate(server, "not-a-uuid", source["secret"]), 401)
    assert_problem(authenticate(server, "0" * 8 + "-0000-0000-0000-" + "0" * 12, "x"), 401)
    with server.client() as client:
        missing = assert_problem(
            client.post("/auth/authenticate", json={"apiKey": source["apiKey"]}), 400
        )
        assert [e["field"] for e in missing["errors"]] == ["secret"]
        wrong_type = assert_problem(
            client.post("/auth/authenticate", json={"apiKey": 5, "secret": "x"}), 400
        )
        assert [e["field"] for e in wrong_type["errors"]] == ["apiKey"]
        not_json = client.post(
            "/auth/authenticate", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert assert_problem(not_json, 400)["errors"][0]["field"] == "body"
        array = client.post("/auth/authenticate", json=[source["apiKey"]])
        assert assert_problem(array, 400)["errors"][0]["field"] == "body"
        # Redox's own curl example sends JSON without a JSON Content-Type: it works.
        as_form = client.post(
            "/auth/authenticate",
            content=json.dumps({"apiKey": source["apiKey"], "secret": source["secret"]}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert as_form.status_code == 200, as_form.text
        form = client.post(
            "/auth/authenticate", data={"apiKey": source["apiKey"], "secret": source["secret"]}
        )
        assert form.status_code == 200, form.text


def test_refresh_token_is_used_once(org: Org) -> None:
    source = create_source(org)
    other = create_source(org, name="Other")
    first = authenticate(org.server, source["apiKey"], source["secret"]).json()
    with org.server.client() as client:

        def refresh(api_key: str, token: str) -> httpx.Response:
            return client.post(
                "/auth/refreshToken", json={"apiKey": api_key, "refreshToken": token}
            )

        assert_problem(refresh(other["apiKey"], first["refreshToken"]), 401)  # not its token
        assert_problem(refresh(source["apiKey"], first["accessToken"]), 401)  # not a refresh
        second = refresh(source["apiKey"], first["refreshToken"])
        assert second.status_code == 200, second.text
        pair = second.json()
        assert set(pair) == {"accessToken", "expires", "refreshToken"}
        assert pair["accessToken"] != first["accessToken"]
        assert sending_source(org.server, pair["accessToken"]) is not None
        assert sending_source(org.server, first["accessToken"]) is not None  # still live
        assert_problem(refresh(source["apiKey"], first["refreshToken"]), 401)  # used up
        missing = assert_problem(
            client.post("/auth/refreshToken", json={"apiKey": source["apiKey"]}), 400
        )
        assert [e["field"] for e in missing["errors"]] == ["refreshToken"]
        expire_tokens(org.server, source["id"])
        assert_problem(refresh(source["apiKey"], pair["refreshToken"]), 401)  # expired


def test_rotation_keeps_the_old_secret_for_a_grace_period(org: Org) -> None:
    source = create_source(org)
    old = source["secret"]
    with org.client() as api:
        rotated = api.post(f"{source_url(source['id'])}/secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["payload"]["source"]["secret"]
    assert new != old
    assert rotated.json()["payload"]["source"]["hasSecret"] is True
    with org.client() as api:
        assert "secret" not in api.get(source_url(source["id"])).json()["payload"]["source"]

    assert authenticate(org.server, source["apiKey"], new).status_code == 200
    assert authenticate(org.server, source["apiKey"], old).status_code == 200
    event = next(e for e in audit_events(org) if e["type"] == "source-secret-rotated")
    grace_ends = datetime.fromisoformat(event["details"]["previousSecretExpiresAt"])
    assert abs(grace_ends - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)

    # 24 hours later the old secret stops; the new one goes on.
    set_source_columns(
        org.server, source["id"], previous_secret_expires_at="2000-01-01T00:00:00.000000Z"
    )
    assert_problem(authenticate(org.server, source["apiKey"], old), 401)
    assert authenticate(org.server, source["apiKey"], new).status_code == 200

    # A second rotation ends the first secret's grace at once.
    with org.client() as api:
        newest = api.post(f"{source_url(source['id'])}/secret").json()["payload"]["source"]
        newer_still = api.post(f"{source_url(source['id'])}/secret").json()["payload"]["source"]
    assert_problem(authenticate(org.server, source["apiKey"], new), 401)
    assert authenticate(org.server, source["apiKey"], newest["secret"]).status_code == 200
    assert authenticate(org.server, source["apiKey"], newer_still["secret"]).status_code == 200


def test_an_oauth_key_has_no_secret_to_rotate(org: Org) -> None:
    apikey = create_apikey(
        org, {"name": "JWKS", "jwkSet": {"keys": [public_jwk(new_ec384(), "k1")]}}
    )
    with org.client() as api:
        shown = api.get(source_url(apikey["id"])).json()["payload"]["source"]
        assert shown["apiKey"] is None
        assert shown["hasSecret"] is False
        assert_problem(api.post(f"{source_url(apikey['id'])}/secret"), 409)
