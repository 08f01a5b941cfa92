"""Role assignments, Redox's way, over real HTTP on both backends.

Organization roles (owner, admin, member) are listed by owners and admins and changed by
owners only; an organization never loses its last owner. Environment roles (engineer,
support, viewer) are managed by owners and admins, one per user and environment. A role
is named by `name` or `id` (a stable uuid per role), and a change applies to the very
next request of the user concerned.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from tests.access_support import (
    SUCCESS,
    User,
    assert_invalid,
    assert_problem,
    destination_url,
    env_destinations,
    env_roles_url,
    make_user,
    org_roles_url,
    settle_after_server_error,
)
from tests.support import Org, Server, sqlite_script
from waypost.db import Database
from waypost.kinds import EnvRole, OrgRole
from waypost.organizations.schemas import role_id
from waypost.organizations.tables import users

ORG_ROLE_IDS = {role.value: role_id(role) for role in OrgRole}
ENV_ROLE_IDS = {role.value: role_id(role) for role in EnvRole}


def role(name: str, kind: str = "env") -> dict[str, str]:
    ids = ENV_ROLE_IDS if kind == "env" else ORG_ROLE_IDS
    return {"id": ids[name], "name": name}


def org_memberships(org: Org, token: str | None = None) -> list[dict[str, Any]]:
    with org.client(token) as api:
        response = api.get(org_roles_url(org.id))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["meta"]["version"] == "1.0.0"
    memberships: list[dict[str, Any]] = body["payload"]["memberships"]
    return memberships


def env_memberships(org: Org, env_id: str, token: str | None = None) -> list[dict[str, Any]]:
    with org.client(token) as api:
        response = api.get(env_roles_url(env_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["version"] == "1.0.0"
    memberships: list[dict[str, Any]] = body["payload"]["memberships"]
    return memberships


def org_role_of(org: Org, user_id: str) -> str:
    roles: list[str] = [
        m["role"]["name"] for m in org_memberships(org) if m["user"]["id"] == user_id
    ]
    assert len(roles) == 1, roles
    return roles[0]


def env_role_of(org: Org, env_id: str, user_id: str) -> str | None:
    roles: list[str] = [
        m["role"]["name"] for m in env_memberships(org, env_id) if m["user"]["id"] == user_id
    ]
    assert len(roles) <= 1, roles
    return roles[0] if roles else None


def send(api: httpx.Client, method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
    return api.request(method, url, json=body)


def assert_success(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == SUCCESS


# --- role ids ------------------------------------------------------------------------------


def test_role_ids_are_distinct_uuids() -> None:
    ids = [*ORG_ROLE_IDS.values(), *ENV_ROLE_IDS.values()]
    assert len(set(ids)) == 6
    for value in ids:
        assert str(uuid.UUID(value)) == value


# --- listing organization roles -------------------------------------------------------------


def test_owner_lists_organization_memberships(org: Org) -> None:
    given = f"Mixed-Case-{uuid.uuid4().hex[:8]}@X.Test"
    admin = make_user(org, "admin", email=given)
    member = make_user(org, "member", Development="viewer")
    memberships = org_memberships(org)
    assert [m["user"]["id"] for m in memberships] == [org.owner_id, admin.id, member.id]
    for membership in memberships:
        assert set(membership) == {"organization", "role", "user"}
        assert membership["organization"] == {"id": org.id, "name": "Acme"}
        assert type(membership["organization"]["id"]) is int
        assert set(membership["user"]) == {"id", "fullname", "lowercaseEmail"}
        assert isinstance(membership["user"]["fullname"], str)
    assert [m["role"] for m in memberships] == [
        role("owner", "org"),
        role("admin", "org"),
        role("member", "org"),
    ]
    by_id = {m["user"]["id"]: m["user"] for m in memberships}
    assert by_id[admin.id]["lowercaseEmail"] == given.lower()
    assert by_id[member.id]["lowercaseEmail"] == member.email


def test_admin_lists_organization_memberships(org: Org) -> None:
    admin = make_user(org, "admin")
    assert [m["user"]["id"] for m in org_memberships(org, admin.token)] == [org.owner_id, admin.id]


def test_member_may_not_list_organization_memberships(org: Org) -> None:
    member = make_user(org, "member", Development="engineer")
    with org.client(member.token) as api:
        assert_problem(api.get(org_roles_url(org.id)), 403)


def test_another_organizations_memberships_are_404(org: Org, other_org: Org) -> None:
    with other_org.client() as api:
        foreign = api.get(org_roles_url(org.id))
        unknown = api.get(org_roles_url(10_000_000))
        assert_problem(foreign, 404)
        assert_problem(unknown, 404)
        assert foreign.json() == unknown.json()
        put = api.put(
            org_roles_url(org.id), json={"role": {"name": "member"}, "user": {"id": org.owner_id}}
        )
        assert_problem(put, 404)
    assert org_role_of(org, org.owner_id) == "owner"


def test_memberships_do_not_mix_organizations(org: Org, other_org: Org) -> None:
    mine = make_user(org, "member")
    assert [m["user"]["id"] for m in org_memberships(org)] == [org.owner_id, mine.id]
    assert [m["user"]["id"] for m in org_memberships(other_org)] == [other_org.owner_id]
    assert {m["organization"]["name"] for m in org_memberships(other_org)} == {"Other"}


def test_unauthenticated_role_assignment_is_401(server: Server, org: Org) -> None:
    with server.client() as api:
        assert_problem(api.get(org_roles_url(org.id)), 401)
        assert_problem(api.get(env_roles_url(org.dev)), 401)
        body = {"role": {"name": "viewer"}, "user": {"id": org.owner_id}}
        assert_problem(api.post(env_roles_url(org.dev), json=body), 401)


# --- changing organization roles ------------------------------------------------------------


@pytest.mark.parametrize("new_role", ["owner", "admin", "member"])
def test_owner_changes_an_organization_role_by_name(org: Org, new_role: str) -> None:
    user = make_user(org, "member" if new_role != "member" else "admin")
    with org.client() as api:
        response = api.put(
            org_roles_url(org.id), json={"role": {"name": new_role}, "user": {"id": user.id}}
        )
    assert_success(response)
    assert org_role_of(org, user.id) == new_role
    assert org_role_of(org, org.owner_id) == "owner"


def test_organization_role_by_id_only(org: Org) -> None:
    user = make_user(org, "member")
    with org.client() as api:
        response = api.put(
            org_roles_url(org.id),
            json={"role": {"id": ORG_ROLE_IDS["admin"]}, "user": {"id": user.id}},
        )
    assert_success(response)
    assert org_role_of(org, user.id) == "admin"


def test_organization_role_by_matching_name_and_id(org: Org) -> None:
    user = make_user(org, "member")
    with org.client() as api:
        response = api.put(
            org_roles_url(org.id), json={"role": role("admin", "org"), "user": {"id": user.id}}
        )
    assert_success(response)
    assert org_role_of(org, user.id) == "admin"


def test_admin_may_not_change_organization_roles(org: Org) -> None:
    admin = make_user(org, "admin")
    member = make_user(org, "member")
    with org.client(admin.token) as api:
        for target, new_role in (
            (member.id, "admin"),
            (admin.id, "owner"),
            (org.owner_id, "member"),
        ):
            response = api.put(
                org_roles_url(org.id), json={"role": {"name": new_role}, "user": {"id": target}}
            )
            assert_problem(response, 403)
    assert org_role_of(org, member.id) == "member"
    assert org_role_of(org, admin.id) == "admin"
    assert org_role_of(org, org.owner_id) == "owner"


def test_member_may_not_change_organization_roles(org: Org) -> None:
    member = make_user(org, "member")
    with org.client(member.token) as api:
        response = api.put(
            org_roles_url(org.id), json={"role": {"name": "owner"}, "user": {"id": member.id}}
        )
    assert_problem(response, 403)
    assert org_role_of(org, member.id) == "member"


@pytest.mark.parametrize("new_role", ["admin", "member"])
def test_demoting_the_last_owner_is_409(org: Org, new_role: str) -> None:
    with org.client() as api:
        response = api.put(
            org_roles_url(org.id), json={"role": {"name": new_role}, "user": {"id": org.owner_id}}
        )
    assert_problem(response, 409)
    assert org_role_of(org, org.owner_id) == "owner"


def test_an_owner_may_be_demoted_while_another_remains(org: Org) -> None:
    second = make_user(org, "member")
    with org.client() as api:
        promoted = api.put(
            org_roles_url(org.id), json={"role": {"name": "owner"}, "user": {"id": second.id}}
        )
        assert_success(promoted)
    # The new owner demotes the first; then the new owner is the last one.
    with org.client(second.token) as api:
        demoted = api.put(
            org_roles_url(org.id), json={"role": {"name": "admin"}, "user": {"id": org.owner_id}}
        )
        assert_success(demoted)
        last = api.put(
            org_roles_url(org.id), json={"role": {"name": "member"}, "user": {"id": second.id}}
        )
        assert_problem(last, 409)
    assert org_role_of(org, org.owner_id) == "admin"
    assert org_role_of(org, second.id) == "owner"


def test_setting_the_last_owner_to_owner_is_no_demotion(org: Org) -> None:
    with org.client() as api:
        response = api.put(
            org_roles_url(org.id), json={"role": {"name": "owner"}, "user": {"id": org.owner_id}}
        )
    assert_success(response)
    assert org_role_of(org, org.owner_id) == "owner"


def test_organization_role_change_applies_to_the_next_request(org: Org) -> None:
    user = make_user(org, "member")
    with org.client(user.token) as mine:
        assert_problem(mine.get(org_roles_url(org.id)), 403)
        with org.client() as owner:
            assert_success(
                owner.put(
                    org_roles_url(org.id),
                    json={"role": {"name": "admin"}, "user": {"id": user.id}},
                )
            )
        assert mine.get(org_roles_url(org.id)).status_code == 200
        # Admin cannot change organization roles, owner can.
        body = {"role": {"name": "member"}, "user": {"id": org.owner_id}}
        assert_problem(mine.put(org_roles_url(org.id), json=body), 403)
        with org.client() as owner:
            assert_success(
                owner.put(
                    org_roles_url(org.id),
                    json={"role": {"name": "owner"}, "user": {"id": user.id}},
                )
            )
        assert_success(mine.put(org_roles_url(org.id), json=body))
        with org.client() as owner:
            assert_problem(owner.get(org_roles_url(org.id)), 403)
    assert {m["user"]["id"]: m["role"]["name"] for m in org_memberships(org, user.token)} == {
        org.owner_id: "member",
        user.id: "owner",
    }


# --- listing environment roles --------------------------------------------------------------


@pytest.mark.parametrize("lister", ["owner", "admin"])
def test_environment_memberships(org: Org, lister: str) -> None:
    viewer = make_user(org, "member", Development="viewer", Production="support")
    admin = make_user(org, "admin", Staging="engineer")
    make_user(org, "member")  # no environment role: not listed
    token = org.owner_token if lister == "owner" else admin.token
    dev = env_memberships(org, org.dev, token)
    assert dev == [
        {
            "environment": {"id": org.dev, "name": "Development"},
            "role": role("engineer"),
            "user": {
                "id": org.owner_id,
                "fullname": dev[0]["user"]["lowercaseEmail"],
                "lowercaseEmail": dev[0]["user"]["lowercaseEmail"],
            },
        },
        {
            "environment": {"id": org.dev, "name": "Development"},
            "role": role("viewer"),
            "user": {
                "id": viewer.id,
                "fullname": viewer.email,  # a user made without a name is named by email
                "lowercaseEmail": viewer.email,
            },
        },
    ]
    assert dev[0]["user"]["lowercaseEmail"].startswith("owner-")
    staging = env_memberships(org, org.staging, token)
    assert [(m["user"]["id"], m["role"]["name"]) for m in staging] == [
        (org.owner_id, "engineer"),
        (admin.id, "engineer"),
    ]
    assert {m["environment"]["name"] for m in staging} == {"Staging"}
    prod = env_memberships(org, org.prod, token)
    assert [(m["user"]["id"], m["role"]) for m in prod] == [
        (org.owner_id, role("engineer")),
        (viewer.id, role("support")),
    ]


def test_member_may_not_list_environment_memberships(org: Org) -> None:
    member = make_user(org, "member", Development="engineer")
    with org.client(member.token) as api:
        assert_problem(api.get(env_roles_url(org.dev)), 403)


def test_another_organizations_environment_is_404(org: Org, other_org: Org) -> None:
    body = {"role": {"name": "viewer"}, "user": {"id": other_org.owner_id}}
    with other_org.client() as api:
        for method, payload in (
            ("GET", None),
            ("POST", body),
            ("PUT", body),
            ("DELETE", {"user": {"id": other_org.owner_id}}),
        ):
            foreign = send(api, method, env_roles_url(org.dev), payload)
            unknown = send(api, method, env_roles_url(str(uuid.uuid4())), payload)
            malformed = send(api, method, env_roles_url("not-a-uuid"), payload)
            assert_problem(foreign, 404)
            assert_problem(unknown, 404)
            assert_problem(malformed, 404)
            assert foreign.json() == unknown.json()
    assert [m["user"]["id"] for m in env_memberships(org, org.dev)] == [org.owner_id]


# --- assigning, changing and removing environment roles --------------------------------------


@pytest.mark.parametrize("manager", ["owner", "admin"])
def test_environment_role_life(org: Org, manager: str) -> None:
    user = make_user(org, "member")
    token = org.owner_token if manager == "owner" else make_user(org, "admin").token
    with org.client(token) as api:
        assigned = api.post(
            env_roles_url(org.dev), json={"role": {"name": "support"}, "user": {"id": user.id}}
        )
        assert_success(assigned)
        assert env_role_of(org, org.dev, user.id) == "support"
        changed = api.put(
            env_roles_url(org.dev), json={"role": {"name": "engineer"}, "user": {"id": user.id}}
        )
        assert_success(changed)
        assert env_role_of(org, org.dev, user.id) == "engineer"
        removed = api.request("DELETE", env_roles_url(org.dev), json={"user": {"id": user.id}})
        assert_success(removed)
    assert env_role_of(org, org.dev, user.id) is None
    # The user is still a member of the organization.
    assert org_role_of(org, user.id) == "member"
    # Other environments were never touched.
    assert env_role_of(org, org.staging, user.id) is None
    assert env_role_of(org, org.prod, user.id) is None


def test_a_second_assignment_is_409(org: Org) -> None:
    user = make_user(org, "member", Development="viewer")
    with org.client() as api:
        for name in ("viewer", "engineer"):
            again = api.post(
                env_roles_url(org.dev), json={"role": {"name": name}, "user": {"id": user.id}}
            )
            assert_problem(again, 409)
    assert env_role_of(org, org.dev, user.id) == "viewer"


def test_one_role_per_environment_but_roles_in_several(org: Org) -> None:
    user = make_user(org, "member")
    with org.client() as api:
        for env_id, name in ((org.dev, "engineer"), (org.staging, "viewer"), (org.prod, "support")):
            assert_success(
                api.post(
                    env_roles_url(env_id), json={"role": {"name": name}, "user": {"id": user.id}}
                )
            )
    assert env_role_of(org, org.dev, user.id) == "engineer"
    assert env_role_of(org, org.staging, user.id) == "viewer"
    assert env_role_of(org, org.prod, user.id) == "support"


def test_changing_or_removing_a_missing_role_is_refused(org: Org) -> None:
    user = make_user(org, "member", Staging="viewer")
    with org.client() as api:
        changed = api.put(
            env_roles_url(org.dev), json={"role": {"name": "viewer"}, "user": {"id": user.id}}
        )
        removed = api.request("DELETE", env_roles_url(org.dev), json={"user": {"id": user.id}})
    assert_problem(changed, 409)
    assert_problem(removed, 409)
    assert env_role_of(org, org.dev, user.id) is None
    assert env_role_of(org, org.staging, user.id) == "viewer"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_member_may_not_manage_environment_roles(org: Org, method: str) -> None:
    member = make_user(org, "member", Development="engineer")
    target = make_user(org, "member", Development="viewer")
    body: dict[str, Any] = {"user": {"id": target.id}}
    if method != "DELETE":
        body["role"] = {"name": "engineer"}
    with org.client(member.token) as api:
        assert_problem(send(api, method, env_roles_url(org.dev), body), 403)
    assert env_role_of(org, org.dev, target.id) == "viewer"


def test_environment_role_by_id_only(org: Org) -> None:
    user = make_user(org, "member")
    with org.client() as api:
        assert_success(
            api.post(
                env_roles_url(org.dev),
                json={"role": {"id": ENV_ROLE_IDS["viewer"]}, "user": {"id": user.id}},
            )
        )
        assert env_role_of(org, org.dev, user.id) == "viewer"
        assert_success(
            api.put(
                env_roles_url(org.dev),
                json={"role": {"id": ENV_ROLE_IDS["support"]}, "user": {"id": user.id}},
            )
        )
    assert env_role_of(org, org.dev, user.id) == "support"


def test_listed_role_objects_are_accepted_back(org: Org) -> None:
    """The `role` a listing shows can be sent as it is."""
    user = make_user(org, "member", Staging="support")
    support = [m["role"] for m in env_memberships(org, org.staging) if m["user"]["id"] == user.id]
    with org.client() as api:
        assert_success(
            api.post(env_roles_url(org.dev), json={"role": support[0], "user": {"id": user.id}})
        )
    assert env_role_of(org, org.dev, user.id) == "support"


def test_user_name_is_accepted_and_the_id_decides(org: Org) -> None:
    user = make_user(org, "member")
    with org.client() as api:
        response = api.post(
            env_roles_url(org.dev),
            json={"role": {"name": "viewer"}, "user": {"id": user.id, "name": "someone else"}},
        )
    assert_success(response)
    assert env_role_of(org, org.dev, user.id) == "viewer"


BAD_ROLES: dict[str, dict[str, Any]] = {
    "name and mismatching id": {"name": "viewer", "id": ENV_ROLE_IDS["engineer"]},
    "unknown name": {"name": "superuser"},
    "name in another case": {"name": "Viewer"},
    "organization role name": {"name": "admin"},
    "organization role id": {"id": ORG_ROLE_IDS["owner"]},
    "unknown id": {"id": str(uuid.uuid4())},
    "neither name nor id": {},
}


@pytest.mark.parametrize("bad_role", BAD_ROLES.values(), ids=BAD_ROLES)
@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.backend_free
def test_bad_environment_role_is_422(org: Org, method: str, bad_role: dict[str, Any]) -> None:
    user = make_user(org, "member", Development="support")
    with org.client() as api:
        response = send(
            api, method, env_roles_url(org.dev), {"role": bad_role, "user": {"id": user.id}}
        )
    body = assert_problem(response, 422)
    assert any(e["field"].startswith("role") for e in body["errors"]), body
    assert env_role_of(org, org.dev, user.id) == "support"


BAD_ORG_ROLES: dict[str, dict[str, Any]] = {
    "name and mismatching id": {"name": "admin", "id": ORG_ROLE_IDS["member"]},
    "unknown name": {"name": "superuser"},
    "environment role name": {"name": "engineer"},
    "environment role id": {"id": ENV_ROLE_IDS["engineer"]},
    "neither name nor id": {},
}


@pytest.mark.parametrize("bad_role", BAD_ORG_ROLES.values(), ids=BAD_ORG_ROLES)
@pytest.mark.backend_free
def test_bad_organization_role_is_422(org: Org, bad_role: dict[str, Any]) -> None:
    user = make_user(org, "member")
    with org.client() as api:
        response = api.put(org_roles_url(org.id), json={"role": bad_role, "user": {"id": user.id}})
    body = assert_problem(response, 422)
    assert any(e["field"].startswith("role") for e in body["errors"]), body
    assert org_role_of(org, user.id) == "member"


def _bad_user_ids(other_org: Org) -> dict[str, str]:
    return {
        "unknown": str(uuid.uuid4()),
        "malformed": "not-a-uuid",
        "another organization's": other_org.owner_id,
    }


@pytest.mark.parametrize("which", ["unknown", "malformed", "another organization's"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_bad_user_in_environment_assignment_is_422(
    org: Org, other_org: Org, method: str, which: str
) -> None:
    user_id = _bad_user_ids(other_org)[which]
    body: dict[str, Any] = {"user": {"id": user_id}}
    if method != "DELETE":
        body["role"] = {"name": "viewer"}
    with org.client() as api:
        assert_invalid(send(api, method, env_roles_url(org.dev), body), "user.id")
    assert [m["user"]["id"] for m in env_memberships(org, org.dev)] == [org.owner_id]
    # The other organization's user kept everything.
    assert env_role_of(other_org, other_org.dev, other_org.owner_id) == "engineer"


@pytest.mark.parametrize("which", ["unknown", "malformed", "another organization's"])
def test_bad_user_in_organization_assignment_is_422(org: Org, other_org: Org, which: str) -> None:
    user_id = _bad_user_ids(other_org)[which]
    with org.client() as api:
        response = api.put(
            org_roles_url(org.id), json={"role": {"name": "member"}, "user": {"id": user_id}}
        )
    assert_invalid(response, "user.id")
    assert org_role_of(other_org, other_org.owner_id) == "owner"


UNKNOWN_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "top level": ({"role": {"name": "viewer"}, "user": {"id": "{user}"}, "extra": 1}, "extra"),
    "in role": ({"role": {"name": "viewer", "level": 3}, "user": {"id": "{user}"}}, "role.level"),
    "in user": (
        {"role": {"name": "viewer"}, "user": {"id": "{user}", "email": "a@b.test"}},
        "user.email",
    ),
    "snake_case": (
        {"role": {"name": "viewer"}, "user": {"id": "{user}"}, "user_id": "x"},
        "user_id",
    ),
}


def _fill(value: Any, user_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, user_id) for k, v in value.items()}
    return user_id if value == "{user}" else value


@pytest.mark.parametrize("case", UNKNOWN_FIELDS.values(), ids=UNKNOWN_FIELDS)
@pytest.mark.parametrize("method", ["POST", "PUT", "ORG PUT"])
@pytest.mark.backend_free
def test_unknown_fields_are_422(org: Org, method: str, case: tuple[dict[str, Any], str]) -> None:
    user = make_user(org, "member", Development="support") if method == "PUT" else make_user(org)
    body = _fill(case[0], user.id)
    with org.client() as api:
        if method == "ORG PUT":
            body["role"]["name"] = "admin"
            response = api.put(org_roles_url(org.id), json=body)
        else:
            response = send(api, method, env_roles_url(org.dev), body)
    assert_invalid(response, case[1])
    assert org_role_of(org, user.id) == "member"
    assert env_role_of(org, org.dev, user.id) == ("support" if method == "PUT" else None)


@pytest.mark.backend_free
def test_unknown_field_in_removal_is_422(org: Org) -> None:
    user = make_user(org, "member", Development="viewer")
    with org.client() as api:
        response = api.request(
            "DELETE",
            env_roles_url(org.dev),
            json={"user": {"id": user.id}, "role": {"name": "viewer"}},
        )
    assert_invalid(response, "role")
    assert env_role_of(org, org.dev, user.id) == "viewer"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"role": {"name": "viewer"}},
        {"user": {"id": "x"}},
        {"role": "viewer", "user": {"id": "x"}},
    ],
    ids=["empty", "no user", "no role", "role as string"],
)
@pytest.mark.backend_free
def test_incomplete_bodies_are_422(org: Org, body: dict[str, Any]) -> None:
    with org.client() as api:
        assert_problem(api.post(env_roles_url(org.dev), json=body), 422)


# --- a change applies on the caller's very next request -------------------------------------


def test_environment_role_changes_apply_on_the_next_request(org: Org) -> None:
    user = make_user(org, "member")
    create = {"name": "mine", "endpoint": "http://receiver.test/in"}
    with org.client() as owner, org.client(user.token) as mine:
        # No role yet: the environment is invisible.
        assert_problem(mine.get(env_destinations(org.dev)), 404)
        assert_success(
            owner.post(
                env_roles_url(org.dev), json={"role": {"name": "viewer"}, "user": {"id": user.id}}
            )
        )
        assert mine.get(env_destinations(org.dev)).status_code == 200
        assert_problem(mine.post(env_destinations(org.dev), json=create), 403)
        assert_success(
            owner.put(
                env_roles_url(org.dev), json={"role": {"name": "engineer"}, "user": {"id": user.id}}
            )
        )
        created = mine.post(env_destinations(org.dev), json=create)
        assert created.status_code == 201, created.text
        destination_id = created.json()["payload"]["destination"]["id"]
        assert_success(
            owner.put(
                env_roles_url(org.dev), json={"role": {"name": "support"}, "user": {"id": user.id}}
            )
        )
        assert mine.get(destination_url(destination_id)).status_code == 200
        assert_problem(mine.patch(destination_url(destination_id), json={"name": "x"}), 403)
        assert_success(
            owner.request("DELETE", env_roles_url(org.dev), json={"user": {"id": user.id}})
        )
        assert_problem(mine.get(env_destinations(org.dev)), 404)
        assert_problem(mine.get(destination_url(destination_id)), 404)
        assert_problem(mine.post(env_destinations(org.dev), json=create), 404)
        listed = mine.get(f"/platform/v1/organizations/{org.id}/environments")
        assert listed.status_code == 200
        assert listed.json()["payload"]["environments"] == []
    # The user is still in the organization.
    assert org_role_of(org, user.id) == "member"


def test_a_manager_may_change_their_own_environment_role(org: Org) -> None:
    admin: User = make_user(org, "admin", Development="engineer")
    with org.client(admin.token) as api:
        assert_success(
            api.put(
                env_roles_url(org.dev), json={"role": {"name": "viewer"}, "user": {"id": admin.id}}
            )
        )
        assert_problem(
            api.post(env_destinations(org.dev), json={"name": "n", "endpoint": "http://r.test/"}),
            403,
        )


# --- concurrent changes ---------------------------------------------------------------------


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Runs the calls in threads released together; returns their responses in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_two_owners_demoting_each_other_at_once_leave_an_owner(server: Server) -> None:
    """The last-owner rule must hold under concurrency too: of two owners demoting each
    other at the same moment, one must be refused."""
    outcomes = []
    for _ in range(8):
        org = server.new_org()
        second = make_user(org, "owner")
        with org.client() as first_api, org.client(second.token) as second_api:
            # Warm both connections, so that the two PUTs leave together.
            assert first_api.get(org_roles_url(org.id)).status_code == 200
            assert second_api.get(org_roles_url(org.id)).status_code == 200
            demote_second = {"role": {"name": "admin"}, "user": {"id": second.id}}
            demote_first = {"role": {"name": "admin"}, "user": {"id": org.owner_id}}
            responses = at_once(
                [
                    partial(first_api.put, org_roles_url(org.id), json=demote_second),
                    partial(second_api.put, org_roles_url(org.id), json=demote_first),
                ]
            )
        for response in responses:
            settle_after_server_error(response)
        statuses = sorted(r.status_code for r in responses)
        owners = _owners(server, org)
        outcomes.append((statuses, len(owners)))
    assert all(count == 1 for _statuses, count in outcomes), outcomes
    # The loser is refused: 409 (the last owner), or 403 when it was already demoted by
    # the time its own request was authorized.
    assert all(statuses in ([200, 403], [200, 409]) for statuses, _count in outcomes), outcomes


def _owners(server: Server, org: Org) -> list[str]:
    """The organization's owners, read from the database (no caller may be left who
    could list them)."""

    async def read(db: Database) -> list[str]:
        async with db.read() as conn:
            rows = await conn.execute(
                sa.select(users.c.id).where(
                    users.c.organization_id == org.id, users.c.org_role == "owner"
                )
            )
            return [row.id for row in rows]

    owners: list[str] = server.run(read)
    return owners


def test_assigning_the_same_role_twice_at_once(server: Server, org: Org) -> None:
    """Both requests find no role and both insert one: one wins, the other is told 409
    (by the unique-violation handler), never a 500."""
    user = make_user(org, "member")
    admin = make_user(org, "admin")
    body = {"role": {"name": "viewer"}, "user": {"id": user.id}}
    with org.client() as owner_api, org.client(admin.token) as admin_api:
        calls = [
            partial(owner_api.post, env_roles_url(org.dev), json=body),
            partial(admin_api.post, env_roles_url(org.dev), json=body),
        ]
        if server.backend == "postgres":
            responses = _both_past_the_check(server, calls)
            expected = [200, 409]
        else:
            responses = [_with_a_writer_in_between(server, user.id, calls[0])]
            expected = [409]
    for response in responses:
        settle_after_server_error(response)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == expected, [r.text for r in responses]
    conflict = next(r for r in responses if r.status_code == 409)
    assert_problem(conflict, 409)
    if server.backend == "postgres":
        assert env_role_of(org, org.dev, user.id) == "viewer"
    else:
        # The refused request rolled back, the other writer's row with it.
        assert env_role_of(org, org.dev, user.id) is None
        with org.client() as api:
            assert_success(api.post(env_roles_url(org.dev), json=body))
        assert env_role_of(org, org.dev, user.id) == "viewer"


def _both_past_the_check(
    server: Server, calls: Sequence[Callable[[], httpx.Response]]
) -> list[httpx.Response]:
    """PostgreSQL: holds a SHARE lock on environment_roles, which lets both requests read
    (and find no role) but stops both at their INSERT; releases them only once both wait
    there. The second INSERT then meets the first's row in the primary key, every time."""
    url = server.settings.resolved_database_url()
    waiting = (
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = 'environment_roles' AND NOT l.granted"
    )
    with psycopg.connect(url) as locker, ThreadPoolExecutor(max_workers=len(calls)) as pool:
        locker.execute("LOCK TABLE environment_roles IN SHARE MODE")
        futures = [pool.submit(call) for call in calls]
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 20
            while watcher.execute(waiting).fetchone() != (len(calls),):
                assert time.monotonic() < deadline, "the requests never reached their INSERT"
                assert not any(f.done() for f in futures), [f.result().text for f in futures]
                time.sleep(0.01)
        locker.commit()
        return [f.result() for f in futures]


def _with_a_writer_in_between(
    server: Server, user_id: str, call: Callable[[], httpx.Response]
) -> httpx.Response:
    """SQLite: writers take turns, so two requests never interleave; a trigger plays the
    other writer, inserting the user's role just before the request's own INSERT, after
    its check found none."""
    trigger = f"race_{uuid.uuid4().hex}"
    sqlite_script(
        server,
        f"CREATE TRIGGER {trigger} BEFORE INSERT ON environment_roles "  # noqa: S608 - our ids
        f"WHEN NEW.user_id = '{user_id}' AND NEW.role = 'viewer' BEGIN "
        "INSERT INTO environment_roles (environment_id, user_id, role) "
        "VALUES (NEW.environment_id, NEW.user_id, 'support'); END;",
    )
    try:
        return call()
    finally:
        sqlite_script(server, f"DROP TRIGGER {trigger};")
