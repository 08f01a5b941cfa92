"""Helpers for the role-assignment, platform-token, audit and rate-limit tests."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import Org
from waypost.auth import service as auth_service
from waypost.kinds import EnvRole, OrgRole

API = "/platform/v1"
PROBLEM_JSON = "application/problem+json"
SUCCESS = {"meta": {"version": "1.0.0"}, "payload": {"success": True}}


@dataclass(frozen=True)
class User:
    id: str
    token: str
    email: str


def make_user(
    org: Org, org_role: str = "member", email: str | None = None, **roles_by_flag: str
) -> User:
    """A new user of `org` with the given roles (e.g. Development="viewer")."""
    address = email or f"user-{uuid.uuid4().hex[:12]}@x.test"
    env_roles = {org.envs[flag]: EnvRole(role) for flag, role in roles_by_flag.items()}
    new = org.server.run(
        lambda db: auth_service.enroll_user(
            db,
            organization_id=org.id,
            email=address,
            org_role=OrgRole(org_role),
            env_roles=env_roles,
        )
    )
    return User(new.user.user.id, new.token.token, new.user.user.email)


def settle_after_server_error(response: httpx.Response) -> None:
    """After a 500, gives the server thread time to log its traceback before the test
    fails: on Python 3.11.7 pytest formatting a failure while another thread formats a
    traceback can crash pytest itself (SystemError: AST constructor recursion depth
    mismatch, CPython gh-106905)."""
    if response.status_code >= 500:
        time.sleep(0.5)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    settle_after_server_error(response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def assert_invalid(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 422 whose `errors` name `field`."""
    body = assert_problem(response, 422)
    fields = [e["field"] for e in body.get("errors") or []]
    assert field in fields, body
    return body


def env_destinations(env_id: str) -> str:
    return f"{API}/environments/{env_id}/destinations"


def destination_url(destination_id: str) -> str:
    return f"{API}/destinations/{destination_id}"


def org_roles_url(org_id: int | str) -> str:
    return f"{API}/organizations/{org_id}/role-assignment"


def env_roles_url(env_id: str) -> str:
    return f"{API}/environments/{env_id}/role-assignment"


def audit_url(org_id: int | str) -> str:
    return f"{API}/organizations/{org_id}/audit-events"


def audit_events(org: Org, **params: Any) -> list[dict[str, Any]]:
    """One page of the organization's audit events, as the owner reads them."""
    with org.client() as api:
        response = api.get(audit_url(org.id), params=params)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["payload"]["results"]
    return results
