"""A verification token that no configured key opens (the server restarted with another
WAYPOST_SECRET_KEY): `verify` says so and names the field, never a 500."""

from __future__ import annotations

from pathlib import Path

from tests.receivers import challenge_reply, receiving
from tests.support import start_server
from waypost.crypto import new_secret_key

API = "/platform/v1"


def test_verify_with_an_unreadable_token_is_a_422_until_it_is_set_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'waypost.db'}"
    with receiving(challenge_reply(token="the-new-token")) as receiver:
        server = start_server("sqlite", url, data, secret_key=new_secret_key())
        try:
            org = server.new_org()
            with org.client() as api:
                created = api.post(
                    f"{API}/environments/{org.dev}/destinations",
                    json={"name": "d", "endpoint": receiver.url, "verificationToken": "old"},
                )
                assert created.status_code == 201, created.text
                destination_id = created.json()["payload"]["destination"]["id"]
        finally:
            server.stop()
        server = start_server("sqlite", url, data, secret_key=new_secret_key())
        try:
            with server.client(org.owner_token) as api:
                verify = f"{API}/destinations/{destination_id}/verify"
                refused = api.post(verify)
                assert refused.status_code == 422, refused.text
                assert refused.headers["content-type"].startswith("application/problem+json")
                problem = refused.json()
                assert [e["field"] for e in problem["errors"]] == ["verificationToken"]
                assert "cannot be opened" in problem["detail"]
                assert "WAYPOST_SECRET_KEY" in problem["detail"]
                assert receiver.seen == []  # nothing was sent with a token it could not open
                events = api.get(f"{API}/organizations/{org.id}/audit-events").json()
                refusals = [
                    e for e in events["payload"]["results"] if e["type"] == "destination-verified"
                ]
                assert refusals and refusals[0]["status"] == "failed"
                done = api.post(verify, json={"verificationToken": "the-new-token"})
                assert done.status_code == 200, done.text
                assert done.json()["payload"]["destination"]["verified"] is True
        finally:
            server.stop()
