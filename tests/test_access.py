"""Who may do what: tokens, the role matrix and organization isolation, over real HTTP.

Redox's model: an organization role (owner, admin, member) and at most one environment
role per environment (engineer, support, viewer). Any environment role reads; only an
engineer writes; deleting in Production also needs owner or admin. Without a role in
the environment, or from another organization, everything is "not found".
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support import Org, Server
from waypost.auth import service as auth_service
from waypost.http import NotFound

PROBLEM_JSON = "application/problem+json"


def env_destinations(env_id: str) -> str:
    return f"/platform/v1/environments/{env_id}/destinations"


def destination_url(destination_id: str) -> str:
    return f"/platform/v1/destinations/{destination_id}"


def environments_url(org_id: int | str) -> str:
    return f"/platform/v1/organizations/{org_id}/environments"


def endpoint_for(flag: str) -> str:
    # Outside Development, endpoints must use https.
    return "http://receiver.test/in" if flag == "Development" else "https://receiver.test/in"


def make_destination(org: Org, flag: str = "Development", name: str = "existing") -> str:
    """A destination created by the owner (an engineer everywhere); returns its id."""
    with org.client() as api:
        created = api.post(
            env_destinations(org.envs[flag]), json={"name": name, "endpoint": endpoint_for(flag)}
        )
    assert created.status_code == 201, created.text
    destination_id: str = created.json()["payload"]["destination"]["id"]
    return destination_id


def destination_ids(org: Org, flag: str) -> list[str]:
    """The destinations the owner sees in an environment."""
    with org.client() as api:
        listed = api.get(env_destinations(org.envs[flag]))
    assert listed.status_code == 200, listed.text
    return [d["id"] for d in listed.json()["payload"]["destinations"]]


def owner_view(org: Org, destination_id: str) -> dict[str, Any]:
    with org.client() as api:
        got = api.get(destination_url(destination_id))
    assert got.status_code == 200, got.text
    destination: dict[str, Any] = got.json()["payload"]["destination"]
    return destination


def do(api: httpx.Client, action: str, env_id: str, destination_id: str) -> httpx.Response:
    """Performs one of the five destination actions."""
    if action == "list":
        return api.get(env_destinations(env_id))
    if action == "get":
        return api.get(destination_url(destination_id))
    if action == "create":
        return api.post(
            env_destinations(env_id), json={"name": "new one", "endpoint": "https://r.test/new"}
        )
    if action == "patch":
        return api.patch(destination_url(destination_id), json={"name": "renamed"})
    if action == "delete":
        return api.delete(destination_url(destination_id))
    raise AssertionError(f"unknown action {action}")


ACTIONS = ("list", "get", "create", "patch", "delete")


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# --- authentication ----------------------------------------------------------------------

UNAUTHENTICATED_HEADERS: dict[str, dict[str, str]] = {
    "no header": {},
    "wrong token": {"Authorization": "Bearer wp_this-token-was-never-issued"},
    "basic scheme": {"Authorization": "Basic xyz"},
    "bearer without token": {"Authorization": "Bearer"},
    "token without scheme": {"Authorization": "wp_this-token-was-never-issued"},
}


@pytest.mark.parametrize("headers", UNAUTHENTICATED_HEADERS.values(), ids=UNAUTHENTICATED_HEADERS)
@pytest.mark.parametrize("action", [*ACTIONS, "environments"])
def test_missing_or_invalid_token_is_401(
    server: Server, org: Org, headers: dict[str, str], action: str
) -> None:
    destination_id = make_destination(org)
    with server.client() as api:
        api.headers.update(headers)
        if action == "environments":
            response = api.get(environments_url(org.id))
        else:
            response = do(api, action, org.dev, destination_id)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    # Nothing was changed by the refused request.
    assert owner_view(org, destination_id)["name"] == "existing"
    assert destination_ids(org, "Development") == [destination_id]


def test_bearer_scheme_is_case_insensitive(org: Org) -> None:
    with org.client() as api:
        api.headers["Authorization"] = f"bearer {org.owner_token}"
        assert api.get(env_destinations(org.dev)).status_code == 200


def test_revoked_token_is_refused_on_the_very_next_request(server: Server, org: Org) -> None:
    issued = server.run(lambda db: auth_service.create_token(db, user_id=org.owner_id))
    token_id, token = issued.id, issued.token
    destination_id = make_destination(org)
    # One client, so the refused request may reuse the kept-alive connection.
    with server.client(token) as api:
        assert api.get(env_destinations(org.dev)).status_code == 200
        assert api.get(environments_url(org.id)).status_code == 200
        server.run(lambda db: auth_service.revoke_token(db, token_id=token_id))
        for action in ACTIONS:
            response = do(api, action, org.dev, destination_id)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
        response = api.get(environments_url(org.id))
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    # The user's other token still works, and nothing changed.
    with org.client() as api:
        assert api.get(env_destinations(org.dev)).status_code == 200
    assert owner_view(org, destination_id)["name"] == "existing"


def test_revoking_twice_is_refused(server: Server, org: Org) -> None:
    token_id = server.run(lambda db: auth_service.create_token(db, user_id=org.owner_id)).id
    server.run(lambda db: auth_service.revoke_token(db, token_id=token_id))
    with pytest.raises(NotFound):
        server.run(lambda db: auth_service.revoke_token(db, token_id=token_id))


def test_a_new_token_works_at_once(server: Server, org: Org) -> None:
    token = server.run(lambda db: auth_service.create_token(db, user_id=org.owner_id)).token
    with server.client(token) as api:
        assert api.get(env_destinations(org.dev)).status_code == 200


# --- the role matrix in Development ------------------------------------------------------

EXPECTED: dict[str | None, dict[str, int]] = {
    "engineer": {"list": 200, "get": 200, "create": 201, "patch": 200, "delete": 200},
    "support": {"list": 200, "get": 200, "create": 403, "patch": 403, "delete": 403},
    "viewer": {"list": 200, "get": 200, "create": 403, "patch": 403, "delete": 403},
    # Engineer in Staging and Production, but no role in Development.
    None: {"list": 404, "get": 404, "create": 404, "patch": 404, "delete": 404},
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", list(EXPECTED), ids=[str(r) for r in EXPECTED])
def test_role_matrix_in_development(org: Org, role: str | None, action: str) -> None:
    destination_id = make_destination(org)
    if role is None:
        token = org.user(Staging="engineer", Production="engineer")
    else:
        token = org.user(Development=role)
    expected = EXPECTED[role][action]
    with org.client(token) as api:
        response = do(api, action, org.dev, destination_id)
    if expected >= 400:
        assert_problem(response, expected)
        # A refused request changes nothing.
        assert destination_ids(org, "Development") == [destination_id]
        assert owner_view(org, destination_id)["name"] == "existing"
        return
    assert response.status_code == expected, response.text
    payload = response.json()["payload"]
    if action == "list":
        assert [d["id"] for d in payload["destinations"]] == [destination_id]
    elif action == "get":
        assert payload["destination"]["id"] == destination_id
        assert payload["destination"]["name"] == "existing"
    elif action == "create":
        assert payload["destination"]["environment"]["id"] == org.dev
        assert len(destination_ids(org, "Development")) == 2
    elif action == "patch":
        assert owner_view(org, destination_id)["name"] == "renamed"
    elif action == "delete":
        assert destination_ids(org, "Development") == []


@pytest.mark.parametrize("action", ACTIONS)
def test_user_without_any_role_sees_nothing(org: Org, action: str) -> None:
    destination_id = make_destination(org)
    token = org.user()
    with org.client(token) as api:
        assert_problem(do(api, action, org.dev, destination_id), 404)
    assert destination_ids(org, "Development") == [destination_id]


@pytest.mark.parametrize("org_role", ["owner", "admin", "member"])
def test_org_role_alone_grants_no_environment_access(org: Org, org_role: str) -> None:
    destination_id = make_destination(org, "Production")
    token = org.user(org_role=org_role, Development="engineer")
    with org.client(token) as api:
        for action in ACTIONS:
            assert_problem(do(api, action, org.prod, destination_id), 404)
    assert destination_ids(org, "Production") == [destination_id]


def test_a_role_in_one_environment_does_not_reach_another(org: Org) -> None:
    staging_destination = make_destination(org, "Staging")
    token = org.user(Development="engineer")
    with org.client(token) as api:
        assert_problem(api.get(env_destinations(org.staging)), 404)
        assert_problem(api.get(destination_url(staging_destination)), 404)
        assert_problem(api.patch(destination_url(staging_destination), json={"name": "x"}), 404)
        assert_problem(api.delete(destination_url(staging_destination)), 404)
        # ... while the Development role itself works.
        assert api.get(env_destinations(org.dev)).status_code == 200
    assert destination_ids(org, "Staging") == [staging_destination]


def test_roles_differ_per_environment(org: Org) -> None:
    dev_destination = make_destination(org, "Development")
    token = org.user(Development="viewer", Production="engineer")
    with org.client(token) as api:
        assert api.get(destination_url(dev_destination)).status_code == 200
        assert_problem(api.patch(destination_url(dev_destination), json={"name": "x"}), 403)
        created = api.post(
            env_destinations(org.prod), json={"name": "p", "endpoint": "https://r.test/p"}
        )
        assert created.status_code == 201, created.text
        prod_destination = created.json()["payload"]["destination"]["id"]
        renamed = api.patch(destination_url(prod_destination), json={"name": "q"})
        assert renamed.status_code == 200, renamed.text
        assert_problem(api.get(env_destinations(org.staging)), 404)


# --- Production deletes need owner or admin ----------------------------------------------


@pytest.mark.parametrize(
    ("org_role", "expected"), [("owner", 200), ("admin", 200), ("member", 403)]
)
def test_production_delete_needs_owner_or_admin(org: Org, org_role: str, expected: int) -> None:
    destination_id = make_destination(org, "Production")
    token = org.user(org_role=org_role, Production="engineer")
    with org.client(token) as api:
        response = api.delete(destination_url(destination_id))
    if expected == 200:
        assert response.status_code == 200, response.text
        assert destination_ids(org, "Production") == []
    else:
        assert_problem(response, 403)
        assert destination_ids(org, "Production") == [destination_id]


def test_org_owner_can_delete_in_production(org: Org) -> None:
    destination_id = make_destination(org, "Production")
    with org.client() as api:
        response = api.delete(destination_url(destination_id))
    assert response.status_code == 200, response.text
    assert destination_ids(org, "Production") == []


def test_member_engineer_may_otherwise_write_in_production(org: Org) -> None:
    token = org.user(org_role="member", Production="engineer")
    with org.client(token) as api:
        created = api.post(
            env_destinations(org.prod), json={"name": "p", "endpoint": "https://r.test/p"}
        )
        assert created.status_code == 201, created.text
        destination_id = created.json()["payload"]["destination"]["id"]
        assert api.patch(destination_url(destination_id), json={"name": "q"}).status_code == 200
        assert_problem(api.delete(destination_url(destination_id)), 403)
    assert owner_view(org, destination_id)["name"] == "q"


@pytest.mark.parametrize("flag", ["Development", "Staging"])
def test_member_engineer_may_delete_outside_production(org: Org, flag: str) -> None:
    destination_id = make_destination(org, flag)
    token = org.user(org_role="member", **{flag: "engineer"})
    with org.client(token) as api:
        response = api.delete(destination_url(destination_id))
    assert response.status_code == 200, response.text
    assert destination_ids(org, flag) == []


@pytest.mark.parametrize("env_role", ["support", "viewer"])
def test_admin_still_needs_engineer_to_delete_in_production(org: Org, env_role: str) -> None:
    destination_id = make_destination(org, "Production")
    token = org.user(org_role="admin", Production=env_role)
    with org.client(token) as api:
        assert_problem(api.delete(destination_url(destination_id)), 403)
        assert api.get(destination_url(destination_id)).status_code == 200
    assert destination_ids(org, "Production") == [destination_id]


# --- organization isolation --------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_another_organization_gets_404_like_an_unknown_id(
    org: Org, other_org: Org, action: str
) -> None:
    destination_id = make_destination(org)
    unknown_env = str(uuid.uuid4())
    unknown_destination = str(uuid.uuid4())
    with other_org.client() as api:
        foreign = do(api, action, org.dev, destination_id)
        unknown = do(api, action, unknown_env, unknown_destination)
    assert_problem(foreign, 404)
    assert_problem(unknown, 404)
    # Nothing tells "exists elsewhere" apart from "does not exist".
    assert foreign.json() == unknown.json()
    assert destination_ids(org, "Development") == [destination_id]
    assert owner_view(org, destination_id)["name"] == "existing"


@pytest.mark.parametrize("action", ["get", "patch", "delete"])
def test_unknown_destination_is_404_as_for_a_caller_without_role(org: Org, action: str) -> None:
    destination_id = make_destination(org)
    with org.client() as api:
        unknown = do(api, action, org.dev, str(uuid.uuid4()))
    with org.client(org.user()) as api:
        hidden = do(api, action, org.dev, destination_id)
    assert_problem(unknown, 404)
    assert_problem(hidden, 404)
    assert unknown.json() == hidden.json()


def test_listings_do_not_mix_organizations(org: Org, other_org: Org) -> None:
    mine = make_destination(org)
    theirs = make_destination(other_org)
    assert destination_ids(org, "Development") == [mine]
    assert destination_ids(other_org, "Development") == [theirs]


def test_a_foreign_engineer_cannot_create_in_my_environment(org: Org, other_org: Org) -> None:
    token = other_org.user(org_role="admin", Development="engineer")
    with other_org.client(token) as api:
        for env_id in (org.dev, org.staging, org.prod):
            created = api.post(
                env_destinations(env_id), json={"name": "x", "endpoint": "https://r.test/x"}
            )
            assert_problem(created, 404)
    for flag in ("Development", "Staging", "Production"):
        assert destination_ids(org, flag) == []


# --- listing environments ----------------------------------------------------------------


def environment_list(org: Org, token: str | None = None) -> list[dict[str, Any]]:
    with org.client(token) as api:
        response = api.get(environments_url(org.id))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    environments: list[dict[str, Any]] = response.json()["payload"]["environments"]
    return environments


def test_owner_lists_all_three_environments(org: Org) -> None:
    environments = environment_list(org)
    assert environments == [
        {
            "id": org.envs[flag],
            "name": flag,
            "environmentFlag": flag,
            "organization": {"id": org.id},
        }
        for flag in ("Development", "Staging", "Production")
    ]
    for environment in environments:
        assert type(environment["organization"]["id"]) is int


def test_environments_list_only_where_the_caller_has_a_role(org: Org) -> None:
    dev_only = org.user(Development="viewer")
    assert environment_list(org, dev_only) == [
        {
            "id": org.dev,
            "name": "Development",
            "environmentFlag": "Development",
            "organization": {"id": org.id},
        }
    ]
    two = org.user(Development="support", Production="engineer")
    assert [e["id"] for e in environment_list(org, two)] == [org.dev, org.prod]
    staging_only = org.user(org_role="admin", Staging="support")
    assert [e["environmentFlag"] for e in environment_list(org, staging_only)] == ["Staging"]


@pytest.mark.parametrize("org_role", ["owner", "admin", "member"])
def test_no_environment_roles_lists_nothing(org: Org, org_role: str) -> None:
    assert environment_list(org, org.user(org_role=org_role)) == []


def test_another_organizations_environments_are_404(org: Org, other_org: Org) -> None:
    with other_org.client() as api:
        foreign = api.get(environments_url(org.id))
        assert_problem(foreign, 404)
        unknown = api.get(environments_url(10_000_000))
        assert_problem(unknown, 404)
        assert foreign.json() == unknown.json()
        # Its own organization still answers.
        assert api.get(environments_url(other_org.id)).status_code == 200


@pytest.mark.parametrize("org_id", ["abc", "1.0", "-1", "0"])
def test_malformed_or_impossible_organization_id_is_404(org: Org, org_id: str) -> None:
    with org.client() as api:
        assert_problem(api.get(environments_url(org_id)), 404)


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wp_not-a-token", "Basic dXNlcjpwYXNz"], ids=str
)
def test_an_unknown_caller_gets_401_before_any_word_about_the_body(
    org: Org, authorization: str | None
) -> None:
    """Create and get find their caller in their own statement, after the body is read;
    a body that breaks a rule must still not answer an unknown caller with a 422."""
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=org.server.base_url, headers=headers) as anonymous:
        refused = anonymous.post(env_destinations(org.dev), json={"name": 7, "bogus": True})
    assert refused.status_code == 401, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    with org.client() as api:
        told = api.post(env_destinations(org.dev), json={"name": 7, "bogus": True})
    assert told.status_code == 422, told.text
