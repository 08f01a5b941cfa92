"""The request rules every route shares, over real HTTP: a query parameter a route does not
take is a 400 naming it and the ones the route takes; a filter value outside its fixed set
is a 400 naming the allowed values; a body sent to a JSON route without
`Content-Type: application/json` is a 415 naming the expected type."""

from __future__ import annotations

import json

import pytest

from tests.access_support import API, assert_problem, audit_url, destination_url, env_destinations
from tests.support import Org

pytestmark = pytest.mark.backend_free


def _errors(body: dict[str, object]) -> dict[str, str]:
    errors = body.get("errors")
    assert isinstance(errors, list), body
    return {e["field"]: e["message"] for e in errors}


def test_an_unknown_query_parameter_is_a_400_naming_it_and_the_ones_taken(org: Org) -> None:
    with org.client() as api:
        body = assert_problem(api.get(env_destinations(org.dev), params={"name": "x"}), 400)
        assert _errors(body) == {
            "name": "unknown query parameter; this route takes _count, _cursor"
        }
        assert body["detail"].startswith("name: unknown query parameter")

        # Several at once, each named once; the known ones beside them are no excuse.
        response = api.get(
            env_destinations(org.dev), params=[("_count", "5"), ("a", "1"), ("b", "2"), ("a", "3")]
        )
        assert set(_errors(assert_problem(response, 400))) == {"a", "b"}

        # A route without query parameters says so.
        body = assert_problem(api.get(f"{API}/destinations/nope", params={"verbose": "1"}), 400)
        assert _errors(body) == {
            "verbose": "unknown query parameter; this route takes no query parameters"
        }

        body = assert_problem(api.get(audit_url(org.id), params={"page": "2"}), 400)
        message = _errors(body)["page"]
        assert "_page" in message and "actionType" in message and "status" in message


def test_a_filter_value_outside_its_set_is_a_400_naming_the_allowed_values(org: Org) -> None:
    with org.client() as api:
        body = assert_problem(api.get(audit_url(org.id), params={"status": "ok"}), 400)
        assert _errors(body) == {"status": "must be one of 'successful' or 'failed'"}

        response = api.get(
            audit_url(org.id),
            params=[("actionType", "destination-created"), ("actionType", "destination-exploded")],
        )
        message = _errors(assert_problem(response, 400))["actionType.1"]
        assert message.startswith("must be one of ")
        assert "'destination-created'" in message and "'subscription-deleted'" in message

        # The values it names are accepted.
        accepted = api.get(
            audit_url(org.id), params={"status": "failed", "actionType": "destination-created"}
        )
        assert accepted.status_code == 200, accepted.text


def test_a_json_route_refuses_a_body_not_labelled_json_with_415(org: Org) -> None:
    body = json.dumps({"name": "EHR feed", "endpoint": "https://receiver.test/redox"})
    with org.client() as api:
        for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
            headers = {"Content-Type": content_type} if content_type else {}
            response = api.post(env_destinations(org.dev), content=body, headers=headers)
            problem = assert_problem(response, 415)
            assert _errors(problem) == {"Content-Type": "must be application/json"}
            assert "application/json" in problem["detail"]
            if content_type:
                assert content_type in problem["detail"]

        # JSON, with parameters or as a +json type, is JSON; nothing was created above.
        assert api.get(env_destinations(org.dev)).json()["payload"]["destinations"] == []
        for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
            made = api.post(
                env_destinations(org.dev), content=body, headers={"Content-Type": content_type}
            )
            assert made.status_code == 201, made.text
            destination = made.json()["payload"]["destination"]["id"]
            patched = api.patch(
                destination_url(destination),
                content=b'{"name": "renamed"}',
                headers={"Content-Type": "text/plain"},
            )
            assert_problem(patched, 415)

        # A route whose body is optional takes no body without a Content-Type.
        verify = api.post(f"{destination_url(destination)}/verify")
        assert verify.status_code != 415, verify.text
