"""Destination rules over real HTTP: every rule passes once and fails once, on both backends.

Each failing case asserts the status, the problem+json shape, the field named in
`errors[].field`, and that nothing was stored or changed (a follow-up GET or list).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.receivers import Receiver, challenge_reply, receiving
from tests.support import Org, Server, sqlite_bytes
from waypost.db import Database
from waypost.destinations.tables import destinations

API = "/platform/v1"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
MIB = 1024 * 1024

ENV_FLAGS = ["Development", "Staging", "Production"]


# --- helpers ------------------------------------------------------------------------------


def env_url(env_id: str) -> str:
    return f"{API}/environments/{env_id}/destinations"


def dest_url(destination_id: str) -> str:
    return f"{API}/destinations/{destination_id}"


def cloud(
    *,
    type_id: Any = "azure",
    product_id: Any = "databricks",
    **settings: Any,
) -> dict[str, Any]:
    """A valid cloudProviderSettings, with `settings` entries overridden by keyword."""
    values: dict[str, Any] = {"storageAccountName": "acct2026", "containerName": "exports"}
    values.update(settings)
    return {"typeId": type_id, "productId": product_id, "settings": values}


def create(api: httpx.Client, env_id: str, **fields: Any) -> httpx.Response:
    """POSTs a destination; `name` defaults to "dest" unless given (pass name=MISSING to omit)."""
    body: dict[str, Any] = {"name": "dest"}
    body.update(fields)
    body = {k: v for k, v in body.items() if v is not MISSING}
    return api.post(env_url(env_id), json=body)


MISSING: Any = object()


def settle(response: httpx.Response) -> None:
    """After a 500, waits (one round trip) until the server has finished logging it.

    The server runs in a thread of this process, and CPython 3.11 before 3.11.8 can raise
    "SystemError: AST constructor recursion depth mismatch" (cpython#106905) when pytest
    parses this file to report the failure while that thread is formatting a traceback;
    that aborts the whole session with INTERNALERROR instead of failing one test.
    """
    if response.status_code == 500:
        httpx.get(str(response.url.copy_with(path="/", query=None)), timeout=30)


def payload(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """Asserts the success envelope and returns its payload."""
    settle(response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(JSON)
    body = response.json()
    assert set(body) == {"meta", "payload"}
    assert body["meta"]["version"] == "1.0.0"
    result: dict[str, Any] = body["payload"]
    return result


def destination_of(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    result = payload(response, status)
    assert set(result) == {"destination"}
    destination: dict[str, Any] = result["destination"]
    assert_destination_shape(destination)
    return destination


def assert_destination_shape(destination: dict[str, Any]) -> None:
    # Later features may add fields; these must be there, and the token never is.
    assert "verificationToken" not in destination
    assert set(destination) >= {
        "id",
        "name",
        "authCredential",
        "endpoint",
        "environment",
        "cloudProviderSettings",
        "setupState",
        "verified",
        "verificationMethod",
        "hasVerificationToken",
        "createdAt",
        "updatedAt",
    }
    assert set(destination["environment"]) == {"id", "environmentFlag"}
    assert isinstance(destination["verified"], bool)
    assert isinstance(destination["hasVerificationToken"], bool)


def create_ok(api: httpx.Client, env_id: str, **fields: Any) -> dict[str, Any]:
    return destination_of(create(api, env_id, **fields), 201)


def get(api: httpx.Client, destination_id: str) -> dict[str, Any]:
    return destination_of(api.get(dest_url(destination_id)))


def listed(api: httpx.Client, env_id: str) -> list[dict[str, Any]]:
    result = payload(api.get(env_url(env_id)))
    items: list[dict[str, Any]] = result["destinations"]
    return items


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Asserts an RFC 9457 problem+json answer with the given status and returns it."""
    settle(response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def invalid(response: httpx.Response, *fields: str) -> list[dict[str, Any]]:
    """Asserts a 422 problem whose `errors` name one of `fields`; returns the errors."""
    body = problem(response, 422)
    errors: list[dict[str, Any]] = body["errors"]
    assert isinstance(errors, list) and errors, body
    for error in errors:
        assert set(error) == {"field", "message"}, error
        assert isinstance(error["field"], str)
        assert isinstance(error["message"], str) and error["message"]
    named = [e["field"] for e in errors]
    assert any(f in named for f in fields), f"expected one of {fields} in {named}"
    return errors


def assert_nothing_created(api: httpx.Client, env_id: str) -> None:
    assert listed(api, env_id) == []


def patch(api: httpx.Client, destination_id: str, **fields: Any) -> httpx.Response:
    return api.patch(dest_url(destination_id), json=fields)


def verified_through_api(api: httpx.Client, destination_id: str) -> None:
    """Verifies a destination the way a client does: POST /verify, answered by a real
    receiver on loopback (the destination's endpoint) that knows its token."""
    response = api.post(f"{dest_url(destination_id)}/verify")
    assert destination_of(response)["verified"] is True
    assert get(api, destination_id)["verified"] is True


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A receiver that answers the handshake for the token "old-token" only."""
    with receiving(challenge_reply(token="old-token")) as running:
        yield running


def stored_token(server: Server, destination_id: str) -> str | None:
    async def go(db: Database) -> str | None:
        async with db.read() as conn:
            result = await conn.execute(
                sa.select(destinations.c.verification_token).where(
                    destinations.c.id == destination_id
                )
            )
            value: str | None = result.scalar_one()
            return value

    token: str | None = server.run(go)
    return token


def distinctive_token() -> str:
    return f"wp-verify-{uuid.uuid4().hex}"


# --- id -----------------------------------------------------------------------------------


def test_client_supplied_id_is_used(org: Org) -> None:
    wanted = str(uuid.uuid4())
    with org.client() as api:
        created = create_ok(api, org.dev, id=wanted, endpoint="http://r.test/a")
        assert created["id"] == wanted
        assert get(api, wanted)["id"] == wanted
        assert [d["id"] for d in listed(api, org.dev)] == [wanted]


def test_generated_id_is_a_uuid(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev)
        assert str(uuid.UUID(created["id"])) == created["id"]


@pytest.mark.parametrize("same_environment", [True, False])
def test_taken_id_conflicts(org: Org, same_environment: bool) -> None:
    taken = str(uuid.uuid4())
    with org.client() as api:
        create_ok(api, org.dev, id=taken, name="first", endpoint="http://r.test/first")
        env = org.dev if same_environment else org.staging
        again = create(api, env, id=taken, name="second", endpoint="https://r.test/second")
        problem(again, 409)
        kept = get(api, taken)
        assert kept["name"] == "first"
        assert kept["endpoint"] == "http://r.test/first"
        assert len(listed(api, org.dev)) == 1
        assert listed(api, org.staging) == []


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234", 123, True, {"id": "x"}])
@pytest.mark.backend_free
def test_invalid_id_is_rejected(org: Org, bad_id: Any) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, id=bad_id), "id")
        assert_nothing_created(api, org.dev)


# --- name ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("a", "a"),
        ("  padded name \t", "padded name"),
        ("x" * 255, "x" * 255),
        ("  " + "y" * 255 + "  ", "y" * 255),
        ("Ünïcødé ✓", "Ünïcødé ✓"),
    ],
)
def test_valid_name_is_stored_trimmed(org: Org, given: str, stored: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name=given)
        assert created["name"] == stored
        assert get(api, created["id"])["name"] == stored


@pytest.mark.parametrize(
    "bad_name",
    [MISSING, None, "", "   ", "\t\n", "z" * 256, " " + "z" * 256 + " ", 5, True, ["a"], {"a": 1}],
    ids=[
        "missing",
        "null",
        "empty",
        "spaces",
        "whitespace",
        "256",
        "256-trimmed",
        "int",
        "bool",
        "list",
        "object",
    ],
)
@pytest.mark.backend_free
def test_invalid_name_is_rejected(org: Org, bad_name: Any) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, name=bad_name), "name")
        assert_nothing_created(api, org.dev)


def test_patch_name_is_trimmed(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name="before")
        updated = destination_of(patch(api, created["id"], name="  after  "))
        assert updated["name"] == "after"
        assert get(api, created["id"])["name"] == "after"


@pytest.mark.parametrize(
    "bad_name",
    [None, "", "   ", "z" * 256, 5],
    ids=["null", "empty", "spaces", "256", "int"],
)
@pytest.mark.backend_free
def test_patch_invalid_name_is_rejected(org: Org, bad_name: Any) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name="keep me")
        invalid(patch(api, created["id"], name=bad_name), "name")
        assert get(api, created["id"])["name"] == "keep me"


# --- authCredential -----------------------------------------------------------------------


def test_null_auth_credential_is_accepted(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, authCredential=None)
        assert created["authCredential"] is None
        updated = destination_of(patch(api, created["id"], authCredential=None))
        assert updated["authCredential"] is None
        assert get(api, created["id"])["authCredential"] is None


# Fixed ids: parameters must be the same in every pytest-xdist worker.
AUTH_CREDENTIALS = [
    "2f0d9a4e-8c1b-4e7a-b6d5-0c3e9f1a2b47",
    "not-a-uuid",
    "",
    0,
    True,
    {"id": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"},
]


@pytest.mark.parametrize("credential", AUTH_CREDENTIALS)
def test_auth_credential_on_create_is_rejected(org: Org, credential: Any) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, authCredential=credential), "authCredential")
        assert_nothing_created(api, org.dev)


@pytest.mark.parametrize("credential", AUTH_CREDENTIALS)
def test_auth_credential_on_patch_is_rejected(org: Org, credential: Any) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev)
        invalid(patch(api, created["id"], authCredential=credential), "authCredential")
        assert get(api, created["id"])["authCredential"] is None


# --- endpoint -----------------------------------------------------------------------------

VALID_ENDPOINTS = [
    "http://receiver.test/in",
    "https://receiver.test:8443/hook?source=redox&x=1",
    "http://127.0.0.1:8080/",
    "http://[::1]:8080/hook",
    "HTTPS://Receiver.TEST/Path",
    "https://receiver.test",
]


@pytest.mark.parametrize("endpoint", VALID_ENDPOINTS)
def test_valid_endpoint_is_stored(org: Org, endpoint: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint=endpoint)
        assert created["endpoint"] == endpoint
        assert created["cloudProviderSettings"] is None
        assert get(api, created["id"])["endpoint"] == endpoint


def long_endpoint(length: int) -> str:
    base = "https://receiver.test/"
    return base + "a" * (length - len(base))


def test_endpoint_of_2048_characters_is_accepted(org: Org) -> None:
    endpoint = long_endpoint(2048)
    assert len(endpoint) == 2048
    with org.client() as api:
        created = create_ok(api, org.prod, endpoint=endpoint)
        assert get(api, created["id"])["endpoint"] == endpoint


INVALID_ENDPOINTS = [
    long_endpoint(2049),
    "ftp://receiver.test/in",
    "file:///etc/passwd",
    "mailto:ops@receiver.test",
    "/relative/path",
    "receiver.test/in",
    "//receiver.test/in",
    "http://",
    "https:///path-only",
    "http://:8080/",
    "http://receiver.test:99999/",
    "http://[::1",
    "",
    "   ",
    5,
    ["https://receiver.test"],
]


@pytest.mark.parametrize(
    "endpoint",
    INVALID_ENDPOINTS,
    ids=[
        "2049",
        "ftp",
        "file",
        "mailto",
        "relative",
        "no-scheme",
        "scheme-relative",
        "no-host",
        "empty-host",
        "port-only",
        "bad-port",
        "bad-ipv6",
        "empty",
        "spaces",
        "int",
        "list",
    ],
)
@pytest.mark.backend_free
def test_invalid_endpoint_is_rejected(org: Org, endpoint: Any) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, endpoint=endpoint), "endpoint")
        assert_nothing_created(api, org.dev)


@pytest.mark.parametrize(
    "endpoint",
    [long_endpoint(2049), "ftp://receiver.test/in", "/relative", "http://", ""],
    ids=["2049", "ftp", "relative", "no-host", "empty"],
)
@pytest.mark.backend_free
def test_patch_invalid_endpoint_is_rejected(org: Org, endpoint: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint="http://receiver.test/keep")
        invalid(patch(api, created["id"], endpoint=endpoint), "endpoint")
        assert get(api, created["id"])["endpoint"] == "http://receiver.test/keep"


def test_http_endpoint_is_allowed_in_development(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint="http://receiver.test/in")
        assert created["endpoint"] == "http://receiver.test/in"
        assert created["environment"] == {"id": org.dev, "environmentFlag": "Development"}
        updated = destination_of(patch(api, created["id"], endpoint="http://receiver.test/new"))
        assert updated["endpoint"] == "http://receiver.test/new"


@pytest.mark.parametrize("flag", ["Staging", "Production"])
def test_https_is_required_outside_development(org: Org, flag: str) -> None:
    env = org.envs[flag]
    with org.client() as api:
        invalid(create(api, env, endpoint="http://receiver.test/in"), "endpoint")
        invalid(create(api, env, endpoint="HTTP://receiver.test/in"), "endpoint")
        assert_nothing_created(api, env)
        created = create_ok(api, env, endpoint="https://receiver.test/in")
        assert created["environment"] == {"id": env, "environmentFlag": flag}
        invalid(patch(api, created["id"], endpoint="http://receiver.test/other"), "endpoint")
        assert get(api, created["id"])["endpoint"] == "https://receiver.test/in"
        updated = destination_of(patch(api, created["id"], endpoint="https://receiver.test/v2"))
        assert updated["endpoint"] == "https://receiver.test/v2"
        assert get(api, created["id"])["endpoint"] == "https://receiver.test/v2"


# --- one type per destination -------------------------------------------------------------


def test_cloud_destination_is_stored_as_given(org: Org) -> None:
    settings = cloud(fileNamePrefix="exports/2026/")
    with org.client() as api:
        created = create_ok(api, org.prod, cloudProviderSettings=settings)
        assert created["cloudProviderSettings"] == settings
        assert created["endpoint"] is None
        assert get(api, created["id"])["cloudProviderSettings"] == settings


def test_endpoint_and_cloud_settings_together_are_rejected(org: Org) -> None:
    with org.client() as api:
        both = create(
            api, org.dev, endpoint="https://receiver.test/in", cloudProviderSettings=cloud()
        )
        invalid(both, "endpoint", "cloudProviderSettings")
        assert_nothing_created(api, org.dev)


def test_cloud_destination_cannot_become_a_url_destination(org: Org) -> None:
    settings = cloud()
    with org.client() as api:
        created = create_ok(api, org.dev, cloudProviderSettings=settings)
        invalid(patch(api, created["id"], endpoint="https://receiver.test/in"), "endpoint")
        kept = get(api, created["id"])
        assert kept["endpoint"] is None
        assert kept["cloudProviderSettings"] == settings


def test_url_destination_may_change_its_endpoint(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint="https://receiver.test/a")
        updated = destination_of(patch(api, created["id"], endpoint="https://receiver.test/b"))
        assert updated["endpoint"] == "https://receiver.test/b"
        assert updated["cloudProviderSettings"] is None


def test_cloud_destination_settings_change_in_part(org: Org) -> None:
    settings = cloud(fileNamePrefix="adt/")
    with org.client() as api:
        created = create_ok(api, org.prod, cloudProviderSettings=settings)
        moved = {"settings": {"containerName": "redox-inbound"}}
        updated = destination_of(patch(api, created["id"], cloudProviderSettings=moved))
        expected = cloud(containerName="redox-inbound", fileNamePrefix="adt/")
        assert updated["cloudProviderSettings"] == expected
        assert get(api, created["id"])["cloudProviderSettings"] == expected

        # The account and the prefix too; null clears the prefix; the type may be restated.
        given = {
            "typeId": "azure",
            "settings": {"storageAccountName": "acmedata", "fileNamePrefix": None},
        }
        updated = destination_of(patch(api, created["id"], cloudProviderSettings=given))
        expected = cloud(storageAccountName="acmedata", containerName="redox-inbound")
        assert updated["cloudProviderSettings"] == expected
        assert updated["endpoint"] is None
        assert get(api, created["id"])["cloudProviderSettings"] == expected


def test_url_destination_cannot_become_a_cloud_destination(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint="https://receiver.test/in")
        response = patch(api, created["id"], cloudProviderSettings=cloud())
        errors = invalid(response, "cloudProviderSettings")
        assert errors == [
            {
                "field": "cloudProviderSettings",
                "message": "this is a URL destination; a destination's type is fixed at "
                "creation, so it cannot become a cloud destination (create a new "
                "destination instead)",
            }
        ]
        assert get(api, created["id"]) == created
        # Asking for none, which it has, changes nothing.
        assert destination_of(patch(api, created["id"], cloudProviderSettings=None)) == created


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        (None, "cloudProviderSettings", "fixed at creation"),
        ({"typeId": "aws"}, "cloudProviderSettings.typeId", ""),
        ({"typeId": None}, "cloudProviderSettings.typeId", "must not be null"),
        ({"settings": None}, "cloudProviderSettings.settings", "must not be null"),
        (
            {"settings": {"containerName": None}},
            "cloudProviderSettings.settings.containerName",
            "must not be null",
        ),
        (
            {"settings": {"containerName": "Bad_Name"}},
            "cloudProviderSettings.settings.containerName",
            "3 to 63 lowercase letters",
        ),
        (
            {"settings": {"storageAccountName": "a"}},
            "cloudProviderSettings.settings.storageAccountName",
            "3 to 24",
        ),
        (
            {"settings": {"fileNamePrefix": "/abs"}},
            "cloudProviderSettings.settings.fileNamePrefix",
            "must not start with '/'",
        ),
        ({"settings": {"region": "x"}}, "cloudProviderSettings.settings.region", "unknown field"),
    ],
    ids=[
        "null",
        "type",
        "type-null",
        "settings-null",
        "container-null",
        "container",
        "account",
        "prefix",
        "unknown",
    ],
)
def test_cloud_settings_patch_keeps_the_rules(org: Org, given: Any, field: str, words: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, cloudProviderSettings=cloud(fileNamePrefix="a/"))
        errors = invalid(patch(api, created["id"], cloudProviderSettings=given), field)
        assert words in next(e["message"] for e in errors if e["field"] == field)
        assert get(api, created["id"]) == created


# --- cloudProviderSettings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (cloud(type_id="aws"), "cloudProviderSettings.typeId"),
        (cloud(type_id="Azure"), "cloudProviderSettings.typeId"),
        (cloud(type_id=None), "cloudProviderSettings.typeId"),
        (cloud(product_id="snowflake"), "cloudProviderSettings.productId"),
        (cloud(product_id=""), "cloudProviderSettings.productId"),
        (
            {"productId": "databricks", "settings": cloud()["settings"]},
            "cloudProviderSettings.typeId",
        ),
        ({"typeId": "azure", "productId": "databricks"}, "cloudProviderSettings.settings"),
        (
            {"typeId": "azure", "productId": "databricks", "settings": "acct/exports"},
            "cloudProviderSettings.settings",
        ),
        ("azure", "cloudProviderSettings"),
    ],
    ids=[
        "type-aws",
        "type-case",
        "type-null",
        "product-snowflake",
        "product-empty",
        "type-missing",
        "settings-missing",
        "settings-not-object",
        "not-object",
    ],
)
@pytest.mark.backend_free
def test_invalid_cloud_provider_is_rejected(org: Org, settings: Any, field: str) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, cloudProviderSettings=settings), field)
        assert_nothing_created(api, org.dev)


@pytest.mark.parametrize("account", ["abc", "a" * 24, "acct2026", "123"])
def test_valid_storage_account_name(org: Org, account: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, cloudProviderSettings=cloud(storageAccountName=account))
        stored = get(api, created["id"])["cloudProviderSettings"]
        assert stored["settings"]["storageAccountName"] == account


@pytest.mark.parametrize(
    "account",
    ["ab", "a" * 25, "MyAccount", "my-account", "my_account", "acct 1", "", "abc\n", 123, None],
    ids=[
        "2",
        "25",
        "uppercase",
        "hyphen",
        "underscore",
        "space",
        "empty",
        "trailing-newline",
        "int",
        "null",
    ],
)
@pytest.mark.backend_free
def test_invalid_storage_account_name(org: Org, account: Any) -> None:
    with org.client() as api:
        response = create(api, org.dev, cloudProviderSettings=cloud(storageAccountName=account))
        invalid(response, "cloudProviderSettings.settings.storageAccountName")
        assert_nothing_created(api, org.dev)


@pytest.mark.parametrize("container", ["my-container-1", "abc", "a-b", "0ab", "c" * 63, "a1-b2-c3"])
def test_valid_container_name(org: Org, container: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, cloudProviderSettings=cloud(containerName=container))
        stored = get(api, created["id"])["cloudProviderSettings"]
        assert stored["settings"]["containerName"] == container


@pytest.mark.parametrize(
    "container",
    [
        "a--b",
        "-abc",
        "abc-",
        "ab",
        "c" * 64,
        "MyContainer",
        "my_container",
        "my.container",
        "",
        "abc\n",
        5,
        None,
    ],
    ids=[
        "double-hyphen",
        "leading-hyphen",
        "trailing-hyphen",
        "2",
        "64",
        "uppercase",
        "underscore",
        "dot",
        "empty",
        "trailing-newline",
        "int",
        "null",
    ],
)
@pytest.mark.backend_free
def test_invalid_container_name(org: Org, container: Any) -> None:
    with org.client() as api:
        response = create(api, org.dev, cloudProviderSettings=cloud(containerName=container))
        invalid(response, "cloudProviderSettings.settings.containerName")
        assert_nothing_created(api, org.dev)


@pytest.mark.backend_free
def test_missing_container_name(org: Org) -> None:
    settings = cloud()
    del settings["settings"]["containerName"]
    with org.client() as api:
        response = create(api, org.dev, cloudProviderSettings=settings)
        invalid(response, "cloudProviderSettings.settings.containerName")
        assert_nothing_created(api, org.dev)


@pytest.mark.parametrize(
    "prefix",
    ["exports/2026/", "exports/", "daily-", "exports/2026/run-", "p" * 512, "a.b/c_d-e/"],
)
def test_valid_file_name_prefix(org: Org, prefix: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, cloudProviderSettings=cloud(fileNamePrefix=prefix))
        assert created["cloudProviderSettings"]["settings"]["fileNamePrefix"] == prefix
        stored = get(api, created["id"])["cloudProviderSettings"]
        assert stored["settings"]["fileNamePrefix"] == prefix


def test_file_name_prefix_is_optional(org: Org) -> None:
    settings = cloud()
    with org.client() as api:
        created = create_ok(api, org.dev, cloudProviderSettings=settings)
        assert "fileNamePrefix" not in created["cloudProviderSettings"]["settings"]
        assert get(api, created["id"])["cloudProviderSettings"] == settings


@pytest.mark.parametrize(
    "prefix",
    ["/exports", "/", "exports/../secret/", "..", "../up", "exports/..", "p" * 513, 5],
    ids=[
        "leading-slash",
        "slash-only",
        "dotdot-middle",
        "dotdot",
        "dotdot-first",
        "dotdot-last",
        "513",
        "int",
    ],
)
@pytest.mark.backend_free
def test_invalid_file_name_prefix(org: Org, prefix: Any) -> None:
    with org.client() as api:
        response = create(api, org.dev, cloudProviderSettings=cloud(fileNamePrefix=prefix))
        invalid(response, "cloudProviderSettings.settings.fileNamePrefix")
        assert_nothing_created(api, org.dev)


# --- environment in the body --------------------------------------------------------------


@pytest.mark.parametrize("form", ["both", "id", "flag", "empty", "null"])
@pytest.mark.parametrize("flag", ENV_FLAGS)
def test_matching_environment_in_body_is_accepted(org: Org, flag: str, form: str) -> None:
    env = org.envs[flag]
    given: dict[str, Any] | None = {
        "both": {"id": env, "environmentFlag": flag},
        "id": {"id": env},
        "flag": {"environmentFlag": flag},
        "empty": {},
        "null": None,
    }[form]
    with org.client() as api:
        created = create_ok(api, env, environment=given, endpoint="https://receiver.test/in")
        assert created["environment"] == {"id": env, "environmentFlag": flag}
        assert get(api, created["id"])["environment"] == {"id": env, "environmentFlag": flag}


@pytest.mark.parametrize("which", ["sibling", "random", "other-org", "empty"])
def test_environment_id_must_match_path(org: Org, other_org: Org, which: str) -> None:
    wrong = {
        "sibling": org.staging,
        "random": str(uuid.uuid4()),
        "other-org": other_org.dev,
        "empty": "",
    }[which]
    with org.client() as api:
        response = create(api, org.dev, environment={"id": wrong, "environmentFlag": "Development"})
        invalid(response, "environment.id")
        assert_nothing_created(api, org.dev)
        assert listed(api, org.staging) == []


@pytest.mark.parametrize(
    ("flag", "given"),
    [
        ("Development", "Production"),
        ("Production", "Development"),
        ("Staging", "Production"),
        ("Development", "development"),
        ("Development", "Dev"),
        ("Development", 1),
    ],
)
def test_environment_flag_must_be_the_real_one(org: Org, flag: str, given: Any) -> None:
    env = org.envs[flag]
    with org.client() as api:
        response = create(
            api,
            env,
            environment={"id": env, "environmentFlag": given},
            endpoint="https://receiver.test/in",
        )
        invalid(response, "environment.environmentFlag")
        assert_nothing_created(api, env)


@pytest.mark.parametrize("given", ["Development", [], 5], ids=["string", "list", "int"])
@pytest.mark.backend_free
def test_environment_must_be_an_object(org: Org, given: Any) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, environment=given), "environment")
        assert_nothing_created(api, org.dev)


@pytest.mark.backend_free
def test_unknown_field_in_environment_is_rejected(org: Org) -> None:
    with org.client() as api:
        response = create(api, org.dev, environment={"id": org.dev, "name": "Development"})
        invalid(response, "environment.name")
        assert_nothing_created(api, org.dev)


# --- setupState ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        None,
        {"step": "choose-type"},
        {"step": "verify", "destination": None},
        {
            "step": "configure-endpoint",
            "destination": {
                "name": "draft",
                "endpoint": "https://receiver.test/in",
                "nested": {"list": [1, 2.5, "three", None, True], "empty": {}},
            },
        },
    ],
    ids=["null", "step-only", "destination-null", "full"],
)
def test_setup_state_is_stored_as_given(org: Org, state: dict[str, Any] | None) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, setupState=state)
        assert created["setupState"] == state
        assert get(api, created["id"])["setupState"] == state
        assert listed(api, org.dev)[0]["setupState"] == state


def test_setup_state_defaults_to_null(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev)
        assert created["setupState"] is None
        assert get(api, created["id"])["setupState"] is None


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ("choose-type", "setupState"),
        (["choose-type"], "setupState"),
        ({}, "setupState.step"),
        ({"destination": {}}, "setupState.step"),
        ({"step": 5}, "setupState.step"),
        ({"step": None}, "setupState.step"),
        ({"step": "x", "destination": "draft"}, "setupState.destination"),
        ({"step": "x", "destination": [1]}, "setupState.destination"),
        ({"step": "x", "stage": 2}, "setupState.stage"),
    ],
    ids=[
        "string",
        "list",
        "empty",
        "step-missing",
        "step-int",
        "step-null",
        "destination-string",
        "destination-list",
        "unknown-key",
    ],
)
@pytest.mark.backend_free
def test_invalid_setup_state_is_rejected(org: Org, state: Any, field: str) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, setupState=state), field)
        assert_nothing_created(api, org.dev)


# --- unknown fields and malformed bodies --------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "verificationTokn",
        "verification_token",
        "auth_credential",
        "endPoint",
        "verified",
        "hasVerificationToken",
        "createdAt",
        "extra",
    ],
)
@pytest.mark.backend_free
def test_unknown_field_on_create_is_rejected(org: Org, field: str) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, **{field: "x"}), field)
        assert_nothing_created(api, org.dev)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("verificationTokn", "x"),
        ("setupState", {"step": "verify"}),
        ("id", str(uuid.uuid4())),
        ("environment", {"environmentFlag": "Development"}),
        ("verified", True),
        ("extra", 1),
    ],
    ids=["typo", "setupState", "id", "environment", "verified", "extra"],
)
@pytest.mark.backend_free
def test_unknown_field_on_patch_is_rejected(org: Org, field: str, value: Any) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name="orig", setupState={"step": "one"})
        invalid(patch(api, created["id"], name="changed", **{field: value}), field)
        kept = get(api, created["id"])
        assert kept == created


@pytest.mark.backend_free
def test_unknown_nested_cloud_setting_is_rejected(org: Org) -> None:
    with org.client() as api:
        response = create(api, org.dev, cloudProviderSettings=cloud(region="westeurope"))
        invalid(response, "cloudProviderSettings.settings.region")
        assert_nothing_created(api, org.dev)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("text", ['{"name": ', "{name: 'a'}", "not json", '{"name": "a"}}'])
@pytest.mark.backend_free
def test_malformed_json_is_400(org: Org, method: str, text: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name="keep")
        url = env_url(org.dev) if method == "POST" else dest_url(created["id"])
        response = api.request(method, url, content=text, headers={"content-type": JSON})
        problem(response, 400)
        assert [d["name"] for d in listed(api, org.dev)] == ["keep"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    "text",
    ["[]", '[{"name": "a"}]', '"a"', "5", "null"],
    ids=["empty-array", "array", "str", "int", "null"],
)
@pytest.mark.backend_free
def test_non_object_json_body_is_422(org: Org, method: str, text: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name="keep")
        url = env_url(org.dev) if method == "POST" else dest_url(created["id"])
        response = api.request(method, url, content=text, headers={"content-type": JSON})
        invalid(response, "body")
        assert [d["name"] for d in listed(api, org.dev)] == ["keep"]


def sized_body(size: int) -> bytes:
    """A valid create body of exactly `size` bytes."""
    head = b'{"name": "big", "setupState": {"step": "s", "destination": {"blob": "'
    tail = b'"}}}'
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(body) == size
    json.loads(body)
    return body


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.backend_free
def test_body_over_one_mib_is_413(org: Org, streamed: bool) -> None:
    body = sized_body(MIB + 1)
    with org.client() as api:
        content: bytes | Iterator[bytes] = chunks(body) if streamed else body
        response = api.post(env_url(org.dev), content=content, headers={"content-type": JSON})
        problem(response, 413)
        assert_nothing_created(api, org.dev)


@pytest.mark.backend_free
def test_patch_body_over_one_mib_is_413(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name="keep")
        big = json.dumps({"name": "n" * (MIB + 10)}).encode()
        response = api.patch(dest_url(created["id"]), content=big, headers={"content-type": JSON})
        problem(response, 413)
        assert get(api, created["id"])["name"] == "keep"


def test_body_of_exactly_one_mib_is_accepted(org: Org) -> None:
    body = sized_body(MIB)
    with org.client() as api:
        response = api.post(env_url(org.dev), content=body, headers={"content-type": JSON})
        created = destination_of(response, 201)
        assert created["setupState"]["destination"]["blob"] == "x" * len(
            json.loads(body)["setupState"]["destination"]["blob"]
        )


# --- PATCH is partial ---------------------------------------------------------------------


def test_patch_changes_only_given_fields(org: Org) -> None:
    state = {"step": "verify", "destination": {"draft": True}}
    with org.client() as api:
        created = create_ok(
            api,
            org.staging,
            name="original",
            endpoint="https://receiver.test/one",
            verificationToken="token-one",
            setupState=state,
        )
        dest_id = created["id"]

        nothing = destination_of(patch(api, dest_id))
        assert nothing["name"] == "original"
        assert get(api, dest_id) == created

        renamed = destination_of(patch(api, dest_id, name="renamed"))
        assert renamed["name"] == "renamed"
        after_rename = get(api, dest_id)
        assert after_rename["name"] == "renamed"
        assert after_rename["endpoint"] == "https://receiver.test/one"
        assert after_rename["hasVerificationToken"] is True
        assert after_rename["setupState"] == state
        assert after_rename["createdAt"] == created["createdAt"]
        assert after_rename["updatedAt"] >= created["updatedAt"]

        moved = destination_of(patch(api, dest_id, endpoint="https://receiver.test/two"))
        assert moved["endpoint"] == "https://receiver.test/two"
        after_move = get(api, dest_id)
        assert after_move["name"] == "renamed"
        assert after_move["endpoint"] == "https://receiver.test/two"
        assert after_move["hasVerificationToken"] is True
        assert after_move["setupState"] == state
        assert after_move["environment"] == {"id": org.staging, "environmentFlag": "Staging"}
        assert after_move["id"] == dest_id
        assert after_move["createdAt"] == created["createdAt"]


def test_patch_several_fields_at_once(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, name="a", endpoint="http://receiver.test/a")
        updated = destination_of(
            patch(
                api,
                created["id"],
                name="b",
                endpoint="http://receiver.test/b",
                verificationToken="tok",
                authCredential=None,
            )
        )
        got = get(api, created["id"])
        assert got == updated
        assert (got["name"], got["endpoint"], got["hasVerificationToken"]) == (
            "b",
            "http://receiver.test/b",
            True,
        )


def test_patch_that_fails_changes_nothing(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.prod, name="a", endpoint="https://receiver.test/a")
        # A valid name alongside an invalid endpoint: neither is applied.
        invalid(patch(api, created["id"], name="b", endpoint="http://receiver.test/b"), "endpoint")
        assert get(api, created["id"]) == created


def test_patch_unknown_destination_is_404(org: Org) -> None:
    with org.client() as api:
        problem(patch(api, str(uuid.uuid4()), name="x"), 404)


# --- verified -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint": "https://receiver.test/moved"},
        {"verificationToken": "new-token"},
        {"verificationToken": None},
        {"endpoint": "https://receiver.test/moved", "name": "both"},
    ],
    ids=["endpoint", "token", "token-cleared", "endpoint-and-name"],
)
def test_new_endpoint_or_token_needs_verification_again(
    org: Org, receiver: Receiver, change: dict[str, Any]
) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint=receiver.url, verificationToken="old-token")
        assert created["verified"] is False
        verified_through_api(api, created["id"])
        updated = destination_of(patch(api, created["id"], **change))
        assert updated["verified"] is False
        assert get(api, created["id"])["verified"] is False


@pytest.mark.parametrize(
    "change",
    [{"name": "renamed"}, {"authCredential": None}, {}],
    ids=["name", "credential", "empty"],
)
def test_other_changes_keep_verified(org: Org, receiver: Receiver, change: dict[str, Any]) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint=receiver.url, verificationToken="old-token")
        verified_through_api(api, created["id"])
        updated = destination_of(patch(api, created["id"], **change))
        assert updated["verified"] is True
        got = get(api, created["id"])
        assert got["verified"] is True
        assert got["endpoint"] == receiver.url
        assert got["hasVerificationToken"] is True


def test_rejected_patch_keeps_verified(org: Org, receiver: Receiver) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint=receiver.url, verificationToken="old-token")
        verified_through_api(api, created["id"])
        invalid(patch(api, created["id"], endpoint="ftp://receiver.test/in"), "endpoint")
        invalid(patch(api, created["id"], verificationToken=7), "verificationToken")
        got = get(api, created["id"])
        assert got["verified"] is True
        assert got["endpoint"] == receiver.url


# --- verification token -------------------------------------------------------------------


def test_has_verification_token_follows_the_token(org: Org) -> None:
    with org.client() as api:
        plain = create_ok(api, org.dev)
        assert plain["hasVerificationToken"] is False
        with_token = create_ok(api, org.dev, verificationToken="abc123")
        assert with_token["hasVerificationToken"] is True
        assert get(api, with_token["id"])["hasVerificationToken"] is True

        set_token = destination_of(patch(api, plain["id"], verificationToken="later-token"))
        assert set_token["hasVerificationToken"] is True
        assert get(api, plain["id"])["hasVerificationToken"] is True

        cleared = destination_of(patch(api, plain["id"], verificationToken=None))
        assert cleared["hasVerificationToken"] is False
        assert get(api, plain["id"])["hasVerificationToken"] is False
        # Other fields leave the token alone.
        destination_of(patch(api, with_token["id"], name="renamed"))
        assert get(api, with_token["id"])["hasVerificationToken"] is True


def test_verification_token_is_never_returned_nor_stored_in_plaintext(
    org: Org, server: Server
) -> None:
    first = distinctive_token()
    second = distinctive_token()
    name = f"visible-name-{uuid.uuid4().hex}"
    seen: list[httpx.Response] = []
    with org.client() as api:
        response = create(
            api, org.dev, name=name, endpoint="http://receiver.test/in", verificationToken=first
        )
        seen.append(response)
        dest_id = destination_of(response, 201)["id"]
        seen.append(api.get(dest_url(dest_id)))
        seen.append(api.get(env_url(org.dev)))
        seen.append(patch(api, dest_id, name="renamed"))
        seen.append(patch(api, dest_id, verificationToken=second))
        seen.append(api.get(dest_url(dest_id)))
        seen.append(api.get(env_url(org.dev)))
        other = create(api, org.dev, verificationToken=first, verificationTokn="typo")
        seen.append(other)
        invalid(other, "verificationTokn")

    for answer in seen:
        assert first not in answer.text
        assert second not in answer.text
        assert "verificationToken" not in answer.text.replace('"hasVerificationToken"', "")

    stored = stored_token(server, dest_id)
    assert stored is not None
    assert stored != second
    assert second not in stored
    assert first not in stored

    if server.backend == "sqlite":
        raw = sqlite_bytes(server)
        # The right file, with the row in it: the name is stored in plaintext.
        assert name.encode() in raw
        assert first.encode() not in raw
        assert second.encode() not in raw


# --- delete -------------------------------------------------------------------------------


def test_delete_answers_a_message_then_404(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev)
        keep = create_ok(api, org.dev, name="other")
        deleted = payload(api.delete(dest_url(created["id"])))
        assert set(deleted) == {"message"}
        assert isinstance(deleted["message"], str) and deleted["message"]
        problem(api.get(dest_url(created["id"])), 404)
        problem(api.delete(dest_url(created["id"])), 404)
        problem(patch(api, created["id"], name="x"), 404)
        assert [d["id"] for d in listed(api, org.dev)] == [keep["id"]]


def test_deleted_id_can_be_reused(org: Org) -> None:
    wanted = str(uuid.uuid4())
    with org.client() as api:
        create_ok(api, org.dev, id=wanted, name="first")
        payload(api.delete(dest_url(wanted)))
        assert create_ok(api, org.dev, id=wanted, name="second")["name"] == "second"


def test_production_delete_by_member_engineer_is_forbidden(org: Org) -> None:
    token = org.user(org_role="member", Production="engineer")
    with org.client() as owner:
        created = create_ok(owner, org.prod, endpoint="https://receiver.test/in")
    with org.client(token) as member:
        # An engineer may otherwise change it...
        destination_of(patch(member, created["id"], name="renamed by member"))
        problem(member.delete(dest_url(created["id"])), 403)
        assert get(member, created["id"])["name"] == "renamed by member"
    with org.client() as owner:
        assert [d["id"] for d in listed(owner, org.prod)] == [created["id"]]


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_production_delete_by_owner_or_admin_engineer(org: Org, who: str) -> None:
    token = org.owner_token if who == "owner" else org.user(org_role="admin", Production="engineer")
    with org.client() as owner:
        created = create_ok(owner, org.prod, endpoint="https://receiver.test/in")
    with org.client(token) as api:
        message = payload(api.delete(dest_url(created["id"])))["message"]
        assert isinstance(message, str) and message
        problem(api.get(dest_url(created["id"])), 404)
    with org.client() as owner:
        assert listed(owner, org.prod) == []


@pytest.mark.parametrize("flag", ["Development", "Staging"])
def test_member_engineer_may_delete_outside_production(org: Org, flag: str) -> None:
    token = org.user(org_role="member", **{flag: "engineer"})
    env = org.envs[flag]
    with org.client() as owner:
        created = create_ok(owner, env, endpoint="https://receiver.test/in")
    with org.client(token) as member:
        payload(member.delete(dest_url(created["id"])))
        problem(member.get(dest_url(created["id"])), 404)


def test_production_delete_by_admin_without_engineer_role_is_forbidden(org: Org) -> None:
    token = org.user(org_role="admin", Production="viewer")
    with org.client() as owner:
        created = create_ok(owner, org.prod, endpoint="https://receiver.test/in")
    with org.client(token) as admin:
        problem(admin.delete(dest_url(created["id"])), 403)
        assert get(admin, created["id"])["id"] == created["id"]


# --- list ---------------------------------------------------------------------------------


def test_list_defaults_to_everything_in_creation_order(org: Org) -> None:
    with org.client() as api:
        # Names sort the other way round, so the order can only come from creation.
        ids = [create_ok(api, org.dev, name=name)["id"] for name in ("c", "b", "a")]
        create_ok(api, org.staging, name="elsewhere", endpoint="https://receiver.test/in")
        response = api.get(env_url(org.dev))
        result = payload(response)
        assert set(result) == {"destinations"}
        assert "links" not in response.json()["meta"]
        items = result["destinations"]
        for item in items:
            assert_destination_shape(item)
        assert [d["id"] for d in items] == ids
        assert [d["name"] for d in items] == ["c", "b", "a"]
        assert all(d["environment"]["id"] == org.dev for d in items)


def test_list_of_empty_environment(org: Org) -> None:
    with org.client() as api:
        response = api.get(env_url(org.prod))
        assert payload(response) == {"destinations": []}
        assert "links" not in response.json()["meta"]


@pytest.mark.parametrize("total", [5, 4])
def test_list_pages_through_with_cursor(org: Org, total: int) -> None:
    with org.client() as api:
        ids = [create_ok(api, org.dev, name=f"d{i}")["id"] for i in range(total)]
        seen: list[str] = []
        pages: list[int] = []
        response = api.get(env_url(org.dev), params={"_count": 2})
        while True:
            body = response.json()
            items = payload(response)["destinations"]
            pages.append(len(items))
            seen.extend(d["id"] for d in items)
            links = body["meta"].get("links")
            if not links or "next" not in links:
                break
            assert len(pages) <= total, "pagination does not end"
            next_url = links["next"]
            assert "_cursor=" in next_url
            response = api.get(next_url)
        assert seen == ids
        assert len(set(seen)) == total
        expected = [2] * (total // 2) + ([1] if total % 2 else [])
        assert pages == expected


def test_last_page_has_no_next_link(org: Org) -> None:
    with org.client() as api:
        for i in range(3):
            create_ok(api, org.dev, name=f"d{i}")
        full = api.get(env_url(org.dev), params={"_count": 3})
        assert len(payload(full)["destinations"]) == 3
        assert "links" not in full.json()["meta"]
        partial = api.get(env_url(org.dev), params={"_count": 2})
        assert "next" in partial.json()["meta"]["links"]


@pytest.mark.parametrize("count", ["1", "1000"])
def test_count_bounds_are_accepted(org: Org, count: str) -> None:
    with org.client() as api:
        create_ok(api, org.dev, name="one")
        create_ok(api, org.dev, name="two")
        response = api.get(env_url(org.dev), params={"_count": count})
        names = [d["name"] for d in payload(response)["destinations"]]
        assert names == (["one"] if count == "1" else ["one", "two"])


@pytest.mark.parametrize("count", ["0", "1001", "-1", "abc", "1.5", ""])
@pytest.mark.backend_free
def test_invalid_count_is_rejected(org: Org, count: str) -> None:
    with org.client() as api:
        invalid(api.get(env_url(org.dev), params={"_count": count}), "_count")


@pytest.mark.parametrize("cursor", ["garbage!", "%%%", "!!", "bm90LWEtbnVtYmVy"])
def test_invalid_cursor_is_rejected(org: Org, cursor: str) -> None:
    with org.client() as api:
        create_ok(api, org.dev)
        invalid(api.get(env_url(org.dev), params={"_cursor": cursor}), "_cursor")


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [b64("9" * 30), b64(str(2**63)), b64("-" + "9" * 30)],
    ids=["huge", "int64-overflow", "huge-negative"],
)
def test_forged_out_of_range_cursor_is_not_a_500(org: Org, cursor: str) -> None:
    with org.client() as api:
        create_ok(api, org.dev)
        response = api.get(env_url(org.dev), params={"_cursor": cursor})
        settle(response)
        assert response.status_code != 500, response.text
        invalid(response, "_cursor")


def test_list_of_another_organizations_environment_is_404(org: Org, other_org: Org) -> None:
    with other_org.client() as other:
        hidden = create_ok(other, other_org.dev)
    with org.client() as api:
        problem(api.get(env_url(other_org.dev)), 404)
        problem(api.get(dest_url(hidden["id"])), 404)
        problem(create(api, other_org.dev), 404)


# --- never a 500 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_body", "field"),
    [
        ('{"name": "nul\\u0000name"}', "name"),
        ('{"name": "a", "endpoint": "http://receiver.test/\\u0000"}', "endpoint"),
        ('{"name": "\\ud800"}', "name"),
        ('{"name": "a", "setupState": {"step": "\\u0000"}}', "setupState.step"),
    ],
    ids=["nul-in-name", "nul-in-endpoint", "lone-surrogate-name", "nul-in-step"],
)
def test_odd_characters_never_cause_a_500(org: Org, raw_body: str, field: str) -> None:
    """Either rejected naming the field, or stored and returned exactly as sent."""
    with org.client() as api:
        response = api.post(env_url(org.dev), content=raw_body, headers={"content-type": JSON})
        settle(response)
        assert response.status_code != 500, response.text
        if response.status_code == 422:
            invalid(response, field)
            assert_nothing_created(api, org.dev)
            return
        created = destination_of(response, 201)
        sent = json.loads(raw_body)
        got = get(api, created["id"])
        for key, value in sent.items():
            expected = value.strip() if key == "name" else value
            assert got[key] == expected
