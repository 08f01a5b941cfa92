"""Deliveries carry the destination's auth credential, and an OAuth token a receiver
refuses is fetched afresh once."""

from __future__ import annotations

import base64

from tests.credentials.helpers import api_key_fields, basic_fields, create_ok, oauth_fields
from tests.credentials.token_server import TokenServer
from tests.delivery.support import (
    BASE,
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


def _attach(org: Org, destination: str, credential: str) -> None:
    patched = org.client().patch(
        f"{BASE}/destinations/{destination}", json={"authCredential": credential}
    )
    assert patched.status_code == 200, patched.text


def test_an_oauth_token_rides_along_and_a_refused_one_is_fetched_again(org: Org) -> None:
    refused: set[str] = set()
    script = Script()
    # The receiver answers 401 to a token it has revoked (before the token's expiry).
    script.fail = lambda body, before: (
        Reply(401) if script.headers_now.get("authorization") in refused else None
    )
    with TokenServer() as tokens, scripted(script) as running:
        credential = create_ok(org.client(), org.dev, **oauth_fields(tokens.url))["id"]
        source = new_source(org)
        destination = new_destination(org, running)
        _attach(org, destination, credential)
        subscribe(org, source, destination)
        assert source.send(message(0, destination)).status_code == 200
        script.wait_delivered(1)
        bearer = script.deliveries[0][1]["authorization"]
        assert bearer.startswith("Bearer token-1-")
        refused.add(bearer)
        assert source.send(message(1, destination)).status_code == 200
        delivered = script.wait_delivered(2)
    assert [b["n"] for b in delivered] == [0, 1]
    assert tokens.issued == 2  # fetched afresh once, within the same attempt
    refused_then_sent = [h["authorization"] for _, h, _ in script.deliveries[1:]]
    assert refused_then_sent[0] == bearer
    assert refused_then_sent[1].startswith("Bearer token-2-")
    assert script.tries[delivered[1]["Meta"]["Logs"][0]["ID"]] == 2
    # One attempt in the log: the refresh happened inside it.
    log_id = delivered[1]["Meta"]["Logs"][0]["ID"]
    assert wait_log(org, log_id, "succeeded")["attempts"]["total"] == 1


def test_an_api_key_credential_is_sent_as_its_header(org: Org) -> None:
    script = Script()
    with scripted(script) as running:
        credential = create_ok(org.client(), org.dev, **api_key_fields())["id"]
        source = new_source(org)
        destination = new_destination(org, running)
        _attach(org, destination, credential)
        subscribe(org, source, destination)
        assert source.send(message(0, destination)).status_code == 200
        script.wait_delivered(1)
    headers = script.deliveries[0][1]
    assert headers["x-api-key"] == "key-0123456789"
    assert "verification-token" in headers


def test_a_patched_basic_password_is_the_one_sent(org: Org) -> None:
    script = Script()
    with scripted(script) as running:
        api = org.client()
        credential = create_ok(api, org.dev, **basic_fields(password="first-password"))["id"]
        source = new_source(org)
        destination = new_destination(org, running)
        _attach(org, destination, credential)
        subscribe(org, source, destination)
        assert source.send(message(0, destination)).status_code == 200
        script.wait_delivered(1)
        patched = api.patch(
            f"{BASE}/authcredentials/{credential}", json={"password": "second-password"}
        )
        assert patched.status_code == 200, patched.text
        assert source.send(message(1, destination)).status_code == 200
        script.wait_delivered(2)
    sent = [
        base64.b64decode(h["authorization"].removeprefix("Basic ")).decode()
        for _, h, _ in script.deliveries
    ]
    assert sent == ["svc:first-password", "svc:second-password"]
