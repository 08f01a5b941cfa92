"""Auth credential endpoints over real HTTP, on SQLite and PostgreSQL: shapes, access,
every validation rule (once passing, once failing), partial updates, deletion, attachment
to destinations, and secrets that never come back out nor rest in plaintext."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from tests.credentials.helpers import (
    API,
    API_KEY,
    BASIC,
    OAUTH,
    SMART,
    api_key_fields,
    basic_fields,
    create,
    create_ok,
    cred_url,
    ec_key,
    env_creds_url,
    get,
    invalid,
    listed,
    oauth_fields,
    patch,
    payload,
    pem,
    problem,
    rsa_key,
    smart_fields,
    try_token,
)
from tests.credentials.token_server import Expect, TokenServer
from tests.support import Org, Server, sqlite_bytes
from waypost.credentials.tables import auth_credentials
from waypost.db import Database

TOKEN_URL = "https://auth.example.org/oauth/token"
MISSING: Any = object()


def with_overrides(fields: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {**fields, **overrides}
    return {k: v for k, v in merged.items() if v is not MISSING}


def destination(api: httpx.Client, env_id: str, **fields: Any) -> httpx.Response:
    body = {"name": "dest", "endpoint": "https://receiver.example.org/redox", **fields}
    return api.post(f"{API}/environments/{env_id}/destinations", json=body)


# --- strategies -----------------------------------------------------------------------------


def test_strategies_are_the_six_waypost_can_use(org: Org) -> None:
    viewer = org.user(Development="viewer")
    with org.client(viewer) as api:
        strategies = payload(api.get(f"{API}/authcredentials/strategies"))["strategies"]
    assert set(strategies) == {OAUTH, SMART, API_KEY, BASIC, "AzureSharedKey", "AzureSAS"}
    for azure, secret in (("AzureSharedKey", "accountKey"), ("AzureSAS", "sasToken")):
        assert strategies[azure] == {
            "availableFields": [secret],
            "requiredFields": [secret],
            "secretFields": [secret],
        }
    for described in strategies.values():
        assert set(described) == {"availableFields", "requiredFields", "secretFields"}
        assert set(described["requiredFields"]) <= set(described["availableFields"])
        assert set(described["secretFields"]) <= set(described["availableFields"])
    oauth = strategies[OAUTH]
    for name in (
        "grantType",
        "url",
        "grantTypeName",
        "clientIdName",
        "clientSecretName",
        "clientId",
        "clientSecret",
        "accessTokenName",
        "expiresFieldName",
        "audience",
        "scopes",
        "contentType",
        "noBasic",
        "resource",
        "customFieldName",
        "customFieldValue",
        "defaultExpirationSeconds",
    ):
        assert name in oauth["availableFields"]
    assert oauth["secretFields"] == ["clientSecret"]
    assert set(oauth["requiredFields"]) == {"url", "clientId", "clientSecret"}
    assert strategies[SMART]["secretFields"] == ["privateKey"]
    assert set(strategies[SMART]["requiredFields"]) == {"url", "clientId", "privateKey", "scopes"}
    assert strategies[API_KEY]["secretFields"] == ["apiKeyValue"]
    assert strategies[BASIC]["secretFields"] == ["password"]


def test_strategies_need_a_token(server: Server) -> None:
    with server.client() as api:
        problem(api.get(f"{API}/authcredentials/strategies"), 401)


# --- create, read, list -----------------------------------------------------------------------


def test_oauth_credential_shows_redox_fields_and_has_flags(org: Org) -> None:
    with org.client() as api:
        created = create_ok(
            api, org.dev, name="  EHR token  ", **oauth_fields(TOKEN_URL, scopes="a b")
        )
        assert str(uuid.UUID(created["id"])) == created["id"]
        assert created["name"] == "EHR token"
        assert created["environmentId"] == org.dev
        assert created["organization"] == org.id
        assert created["authStrategy"] == OAUTH
        assert created["createdAt"] == created["updatedAt"]
        assert created["url"] == TOKEN_URL
        assert created["clientId"] == "client-1"
        assert created["scopes"] == "a b"
        assert created["hasClientSecret"] is True
        # Unset fields show their defaults, or null.
        assert created["grantType"] == "client_credentials"
        assert created["grantTypeName"] == "grant_type"
        assert created["clientIdName"] == "client_id"
        assert created["clientSecretName"] == "client_secret"
        assert created["accessTokenName"] == "access_token"
        assert created["expiresFieldName"] == "expires_in"
        assert created["contentType"] == "application/x-www-form-urlencoded"
        assert created["noBasic"] is False
        assert created["audience"] is None
        assert created["defaultExpirationSeconds"] is None
        # Only the strategy's own fields are shown.
        assert "headerName" not in created and "hasPassword" not in created
        assert get(api, created["id"]) == created
        assert listed(api, org.dev) == [created]


@pytest.mark.parametrize(
    ("strategy", "flag", "shown"),
    [
        (SMART, "hasPrivateKey", {"clientId": "smart-client", "keyId": None}),
        (API_KEY, "hasApiKeyValue", {"headerName": "X-Api-Key"}),
        (BASIC, "hasPassword", {"username": "svc"}),
    ],
)
def test_each_strategy_round_trips(
    org: Org, strategy: str, flag: str, shown: dict[str, Any]
) -> None:
    fields = {
        SMART: smart_fields(TOKEN_URL, pem(rsa_key())),
        API_KEY: api_key_fields(),
        BASIC: basic_fields(),
    }[strategy]
    with org.client() as api:
        created = create_ok(api, org.dev, **fields)
        assert created[flag] is True
        assert created["authStrategy"] == strategy
        for name, value in shown.items():
            assert created[name] == value
        assert get(api, created["id"]) == created
        assert listed(api, org.dev) == [created]


def test_list_is_per_environment_in_creation_order(org: Org) -> None:
    with org.client() as api:
        first = create_ok(api, org.dev, name="first", **basic_fields())
        second = create_ok(api, org.dev, name="second", **api_key_fields())
        staged = create_ok(api, org.staging, name="staged", **basic_fields())
        assert [c["id"] for c in listed(api, org.dev)] == [first["id"], second["id"]]
        assert [c["id"] for c in listed(api, org.staging)] == [staged["id"]]
        assert listed(api, org.prod) == []


def test_secrets_never_appear_in_any_answer(org: Org) -> None:
    secrets = {
        "clientSecret": f"cs-{uuid.uuid4().hex}",
        "apiKeyValue": f"ak-{uuid.uuid4().hex}",
        "password": f"pw-{uuid.uuid4().hex}",
    }
    key = pem(rsa_key())
    with org.client() as api:
        answers = [
            create(api, org.dev, **oauth_fields(TOKEN_URL, clientSecret=secrets["clientSecret"])),
            create(api, org.dev, **api_key_fields(apiKeyValue=secrets["apiKeyValue"])),
            create(api, org.dev, **basic_fields(password=secrets["password"])),
            create(api, org.dev, **smart_fields(TOKEN_URL, key)),
        ]
        ids = [payload(a, 201)["authCredential"]["id"] for a in answers]
        answers.append(api.get(env_creds_url(org.dev)))
        answers += [api.get(cred_url(i)) for i in ids]
        answers.append(patch(api, ids[0], clientSecret=secrets["clientSecret"] + "x"))
        # A refused update must not echo the secret either.
        answers.append(patch(api, ids[0], clientSecret=secrets["clientSecret"] + "\n"))
        answers.append(patch(api, ids[1], apiKeyValue=secrets["apiKeyValue"] + "\u00e9"))
    for answer in answers:
        for secret in [*secrets.values(), "BEGIN PRIVATE KEY", key.splitlines()[1]]:
            assert secret not in answer.text


# --- access -----------------------------------------------------------------------------------


def test_engineer_writes_and_every_role_reads(org: Org) -> None:
    engineer = org.user(Development="engineer")
    with org.client(engineer) as api:
        created = create_ok(api, org.dev, **basic_fields())
        assert payload(patch(api, created["id"], name="renamed"))["authCredential"]["name"] == (
            "renamed"
        )
    for role in ("viewer", "support"):
        token = org.user(Development=role)
        with org.client(token) as api:
            assert get(api, created["id"])["name"] == "renamed"
            assert [c["id"] for c in listed(api, org.dev)] == [created["id"]]
            problem(create(api, org.dev, **basic_fields()), 403)
            problem(patch(api, created["id"], name="nope"), 403)
            problem(api.delete(cred_url(created["id"])), 403)
            problem(api.post(f"{cred_url(created['id'])}/test"), 403)
    with org.client(engineer) as api:
        assert get(api, created["id"])["name"] == "renamed"
        assert len(listed(api, org.dev)) == 1
        payload(api.delete(cred_url(created["id"])))
        problem(api.get(cred_url(created["id"])), 404)


def _refused_everywhere(api: httpx.Client, env_id: str, credential_id: str) -> None:
    problem(api.get(cred_url(credential_id)), 404)
    problem(api.get(env_creds_url(env_id)), 404)
    problem(create(api, env_id, **basic_fields()), 404)
    problem(patch(api, credential_id, name="x"), 404)
    problem(api.delete(cred_url(credential_id)), 404)
    problem(api.post(f"{cred_url(credential_id)}/test"), 404)


def test_no_role_in_the_environment_is_not_found(org: Org) -> None:
    elsewhere = org.user(Staging="engineer")
    with org.client() as api:
        created = create_ok(api, org.dev, **basic_fields())
    with org.client(elsewhere) as api:
        _refused_everywhere(api, org.dev, created["id"])
    with org.client() as api:
        assert get(api, created["id"])["name"] == "cred"


def test_another_organization_is_not_found(org: Org, other_org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **basic_fields())
    with other_org.client() as api:
        _refused_everywhere(api, org.dev, created["id"])
    with org.client() as api:
        assert len(listed(api, org.dev)) == 1


@pytest.mark.parametrize(
    "bad_id", ["not-a-uuid", "7d1c3f0e-5b0a-4f6e-9c2d-3a8b1e4f5a60", "strategies2"]
)
def test_unknown_credential_is_not_found(org: Org, bad_id: str) -> None:
    with org.client() as api:
        problem(api.get(cred_url(bad_id)), 404)
        problem(patch(api, bad_id, name="x"), 404)
        problem(api.delete(cred_url(bad_id)), 404)
        problem(api.post(f"{cred_url(bad_id)}/test"), 404)


def test_unauthenticated_is_refused(server: Server, org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **basic_fields())
    with server.client() as api:
        problem(api.get(cred_url(created["id"])), 401)
        problem(create(api, org.dev, **basic_fields()), 401)
    with server.client("wp_not-a-real-token") as api:
        problem(api.get(env_creds_url(org.dev)), 401)


# --- rules common to every strategy -------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "tab\tinside"}, "name"),
        ({"name": MISSING}, "name"),
        ({"name": 7}, "name"),
        ({"authStrategy": "AwsSigv4"}, "authStrategy"),
        ({"authStrategy": MISSING}, "authStrategy"),
        ({"environmentId": "not-a-uuid"}, "environmentId"),
        ({"environmentId": MISSING}, "environmentId"),
        ({"organization": "1"}, "organization"),
        ({"surprise": True}, "surprise"),
    ],
)
@pytest.mark.backend_free
def test_common_rule_refuses(org: Org, overrides: dict[str, Any], field: str) -> None:
    body = with_overrides({"environmentId": org.dev, "name": "cred", **basic_fields()}, overrides)
    with org.client() as api:
        invalid(api.post(f"{API}/authcredentials", json=body), field)
        assert listed(api, org.dev) == []


def test_name_rules_accept(org: Org) -> None:
    with org.client() as api:
        assert create_ok(api, org.dev, name="x" * 255, **basic_fields())["name"] == "x" * 255
        assert create_ok(api, org.dev, name=" Ünïcødé ✓ ", **basic_fields())["name"] == (
            "Ünïcødé ✓"
        )


def test_organization_must_be_yours(org: Org, other_org: Org) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, organization=other_org.id, **basic_fields()), "organization")
        assert listed(api, org.dev) == []
        create_ok(api, org.dev, organization=org.id, **basic_fields())


def test_unknown_environment_is_not_found(org: Org) -> None:
    with org.client() as api:
        problem(create(api, str(uuid.uuid4()), **basic_fields()), 404)


@pytest.mark.backend_free
def test_body_must_be_a_json_object(org: Org) -> None:
    with org.client() as api:
        invalid(api.post(f"{API}/authcredentials", json=[1, 2]), "body")
        malformed = api.post(
            f"{API}/authcredentials", content=b"{", headers={"Content-Type": "application/json"}
        )
        problem(malformed, 400)


# --- OAuth_2.0_2-legged rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": MISSING}, "url"),
        ({"clientId": MISSING}, "clientId"),
        ({"clientSecret": MISSING}, "clientSecret"),
        ({"url": "auth.example.org/token"}, "url"),
        ({"url": "ftp://auth.example.org/token"}, "url"),
        ({"url": "https://auth.example.org:99999/token"}, "url"),
        ({"url": "https://user:pw@auth.example.org/token"}, "url"),
        ({"url": "https://auth.example.org/to ken"}, "url"),
        ({"url": "https://auth.example.org/" + "x" * 2048}, "url"),
        ({"url": 42}, "url"),
        ({"clientId": ""}, "clientId"),
        ({"clientId": " client-1"}, "clientId"),
        ({"clientSecret": "s3cret\n"}, "clientSecret"),
        ({"clientSecret": "s3cret "}, "clientSecret"),
        ({"clientSecret": "s" * 4097}, "clientSecret"),
        ({"clientSecret": None}, "clientSecret"),
        ({"grantType": "password"}, "grantType"),
        ({"grantTypeName": "grant type"}, "grantTypeName"),
        ({"clientIdName": ""}, "clientIdName"),
        ({"accessTokenName": "x" * 256}, "accessTokenName"),
        ({"contentType": "text/plain"}, "contentType"),
        ({"noBasic": "yes"}, "noBasic"),
        ({"noBasic": 1}, "noBasic"),
        ({"defaultExpirationSeconds": 0}, "defaultExpirationSeconds"),
        ({"defaultExpirationSeconds": -5}, "defaultExpirationSeconds"),
        ({"defaultExpirationSeconds": 10**9}, "defaultExpirationSeconds"),
        ({"defaultExpirationSeconds": "3600"}, "defaultExpirationSeconds"),
        ({"defaultExpirationSeconds": True}, "defaultExpirationSeconds"),
        ({"scopes": "a\nb"}, "scopes"),
        ({"audience": ""}, "audience"),
        ({"customFieldName": "tenant"}, "customFieldValue"),
        ({"customFieldValue": "acme"}, "customFieldName"),
        ({"customFieldName": "grant_type", "customFieldValue": "x"}, "customFieldName"),
        ({"customFieldName": "scope", "customFieldValue": "x"}, "customFieldName"),
        ({"privateKey": "irrelevant"}, "privateKey"),
        ({"headerName": "X-Api-Key"}, "headerName"),
        ({"refreshTokenName": "refresh_token"}, "refreshTokenName"),
    ],
)
@pytest.mark.backend_free
def test_oauth_rule_refuses(org: Org, overrides: dict[str, Any], field: str) -> None:
    with org.client() as api:
        invalid(create(api, org.dev, **with_overrides(oauth_fields(TOKEN_URL), overrides)), field)
        assert listed(api, org.dev) == []


@pytest.mark.backend_free
def test_oauth_password_grant_fields_are_refused_with_the_reason(org: Org) -> None:
    with org.client() as api:
        message = invalid(create(api, org.dev, **oauth_fields(TOKEN_URL, username="u")), "username")
        assert "client_credentials" in message
        invalid(create(api, org.dev, **oauth_fields(TOKEN_URL, password="p")), "password")


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({"grantType": MISSING}, {"grantType": "client_credentials"}),
        ({"url": "http://auth.example.org/token"}, {}),
        ({"url": "https://auth.example.org:8443/t?tenant=1"}, {}),
        ({"noBasic": True}, {"noBasic": True}),
        ({"noBasic": "true"}, {"noBasic": True}),
        ({"noBasic": False}, {"noBasic": False}),
        ({"noBasic": "false"}, {"noBasic": False}),
        ({"contentType": "application/json"}, {}),
        ({"defaultExpirationSeconds": 1}, {}),
        ({"defaultExpirationSeconds": 366 * 24 * 3600}, {}),
        ({"customFieldName": "tenant", "customFieldValue": "acme corp"}, {}),
        (
            {
                "grantTypeName": "grantType",
                "clientIdName": "clientKey",
                "clientSecretName": "clientPassword",
                "accessTokenName": "accessToken",
                "expiresFieldName": "expiresIn",
            },
            {},
        ),
        (
            {
                "scopes": "system/*.read launch",
                "audience": "https://api.example.org",
                "resource": "https://fhir.example.org/r4",
            },
            {},
        ),
        ({"clientSecret": "s" * 4096}, {"hasClientSecret": True}),
        ({"clientSecret": "inner spaces are fine"}, {"hasClientSecret": True}),
    ],
)
def test_oauth_rule_accepts(org: Org, overrides: dict[str, Any], shown: dict[str, Any]) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **with_overrides(oauth_fields(TOKEN_URL), overrides))
        expected = {k: v for k, v in overrides.items() if v is not MISSING and k != "clientSecret"}
        expected |= shown
        for name, value in expected.items():
            assert created[name] == value, name


@pytest.mark.parametrize("flag", ["Development", "Staging", "Production"])
@pytest.mark.parametrize("strategy", [OAUTH, SMART])
def test_token_url_needs_https_outside_development(org: Org, flag: str, strategy: str) -> None:
    env = org.envs[flag]

    def fields(url: str) -> dict[str, Any]:
        return oauth_fields(url) if strategy == OAUTH else smart_fields(url, pem(rsa_key()))

    with org.client() as api:
        plain = create(api, env, **fields("http://auth.example.org/token"))
        if flag == "Development":
            payload(plain, 201)
        else:
            assert "https" in invalid(plain, "url")
            assert listed(api, env) == []
        created = create_ok(api, env, **fields(TOKEN_URL))
        # The same rule holds when the URL changes later.
        downgraded = patch(api, created["id"], url="http://auth.example.org/other")
        if flag == "Development":
            payload(downgraded)
        else:
            invalid(downgraded, "url")
            assert get(api, created["id"])["url"] == TOKEN_URL


# --- SMART_Backend rules ------------------------------------------------------------------------


def _certificate_pem() -> str:
    return "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"privateKey": "not a key"}, "privateKey", "PEM"),
        ({"privateKey": _certificate_pem()}, "privateKey", "PEM"),
        ({"privateKey": pem(rsa_key(1024))}, "privateKey", "2048"),
        ({"privateKey": pem(ec_key(ec.SECP256R1()))}, "privateKey", "P-384"),
        ({"privateKey": pem(rsa_key(), password=b"pass")}, "privateKey", "passphrase"),
        ({"privateKey": "x" * 20000}, "privateKey", "16384"),
        ({"privateKey": MISSING}, "privateKey", "required"),
        ({"scopes": MISSING}, "scopes", "required"),
        ({"clientId": MISSING}, "clientId", "required"),
        ({"url": MISSING}, "url", "required"),
        ({"keyId": ""}, "keyId", "1 to 255"),
        ({"clientSecret": "s"}, "clientSecret", "SMART_Backend"),
        ({"noBasic": True}, "noBasic", "SMART_Backend"),
    ],
)
@pytest.mark.backend_free
def test_smart_rule_refuses(org: Org, overrides: dict[str, Any], field: str, says: str) -> None:
    fields = with_overrides(smart_fields(TOKEN_URL, pem(rsa_key())), overrides)
    with org.client() as api:
        assert says in invalid(create(api, org.dev, **fields), field)
        assert listed(api, org.dev) == []


@pytest.mark.parametrize("key", ["rsa", "ec384", "rsa4096-padded"])
def test_smart_rule_accepts(org: Org, key: str) -> None:
    private_key = {
        "rsa": lambda: pem(rsa_key()),
        "ec384": lambda: pem(ec_key(ec.SECP384R1())),
        "rsa4096-padded": lambda: "\n\n" + pem(rsa_key(4096)) + "\n  \n",
    }[key]()
    with org.client() as api:
        created = create_ok(api, org.dev, **smart_fields(TOKEN_URL, private_key, keyId="k-1"))
        assert created["hasPrivateKey"] is True
        assert created["keyId"] == "k-1"


# --- ApiKeyHeader and BasicAuth rules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (api_key_fields(headerName=MISSING), "headerName"),
        (api_key_fields(apiKeyValue=MISSING), "apiKeyValue"),
        (api_key_fields(headerName="X Api Key"), "headerName"),
        (api_key_fields(headerName="X-Api-Key:"), "headerName"),
        (api_key_fields(headerName="Host"), "headerName"),
        (api_key_fields(headerName="content-length"), "headerName"),
        (api_key_fields(headerName="Verification-Token"), "headerName"),
        (api_key_fields(apiKeyValue=" key"), "apiKeyValue"),
        (api_key_fields(apiKeyValue="key\r\nX-Evil: 1"), "apiKeyValue"),
        (api_key_fields(apiKeyValue="clé"), "apiKeyValue"),
        (api_key_fields(apiKeyValue="k" * 4097), "apiKeyValue"),
        (api_key_fields(url=TOKEN_URL), "url"),
        (basic_fields(username=MISSING), "username"),
        (basic_fields(password=MISSING), "password"),
        (basic_fields(username="a:b"), "username"),
        (basic_fields(username=""), "username"),
        (basic_fields(password="pw\n"), "password"),
        (basic_fields(password="p" * 1025), "password"),
        (basic_fields(clientId="x"), "clientId"),
    ],
)
@pytest.mark.backend_free
def test_header_strategy_rule_refuses(org: Org, fields: dict[str, Any], field: str) -> None:
    fields = {k: v for k, v in fields.items() if v is not MISSING}
    with org.client() as api:
        invalid(create(api, org.dev, **fields), field)
        assert listed(api, org.dev) == []


@pytest.mark.parametrize(
    "fields",
    [
        api_key_fields(headerName="Authorization", apiKeyValue="Bearer static-abc"),
        api_key_fields(headerName="x-custom_key.v2", apiKeyValue="k" * 4096),
        basic_fields(username="user@example.org", password="pässwörd with spaces"),
    ],
)
def test_header_strategy_rule_accepts(org: Org, fields: dict[str, Any]) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **fields)
        for name in ("headerName", "username"):
            if name in fields:
                assert created[name] == fields[name]


# --- PATCH --------------------------------------------------------------------------------------


def test_patch_is_partial(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **oauth_fields(TOKEN_URL, scopes="a", audience="aud"))
        renamed = payload(patch(api, created["id"], name="renamed"))["authCredential"]
        assert renamed["name"] == "renamed"
        assert renamed["updatedAt"] > created["updatedAt"]
        unchanged = {k: v for k, v in created.items() if k not in ("name", "updatedAt")}
        assert {k: renamed[k] for k in unchanged} == unchanged
        # null clears an optional field; absent fields keep theirs.
        cleared = payload(patch(api, created["id"], audience=None, scopes="b c"))["authCredential"]
        assert cleared["audience"] is None
        assert cleared["scopes"] == "b c"
        assert cleared["hasClientSecret"] is True
        assert cleared["name"] == "renamed"
        # null on a defaulted field shows the default again.
        named = payload(patch(api, created["id"], grantTypeName="grantType"))["authCredential"]
        assert named["grantTypeName"] == "grantType"
        reset = payload(patch(api, created["id"], grantTypeName=None))["authCredential"]
        assert reset["grantTypeName"] == "grant_type"
        assert get(api, created["id"]) == reset


def test_empty_patch_changes_nothing(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **basic_fields())
        assert payload(patch(api, created["id"]))["authCredential"] == created
        assert get(api, created["id"]) == created


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"url": None}, "url"),
        ({"clientSecret": None}, "clientSecret"),
        ({"clientId": None}, "clientId"),
        ({"authStrategy": BASIC}, "authStrategy"),
        ({"environmentId": "00000000-0000-4000-8000-000000000000"}, "environmentId"),
        ({"username": "u"}, "username"),
        ({"apiKeyValue": "k"}, "apiKeyValue"),
        ({"customFieldName": "tenant"}, "customFieldValue"),
        ({"url": "not a url"}, "url"),
        ({"bogus": 1}, "bogus"),
    ],
)
@pytest.mark.backend_free
def test_patch_rule_refuses(org: Org, fields: dict[str, Any], field: str) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **oauth_fields(TOKEN_URL))
        invalid(patch(api, created["id"], **fields), field)
        assert get(api, created["id"]) == created


def test_patch_accepts_the_same_strategy_environment_and_organization(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, **basic_fields())
        same = patch(
            api,
            created["id"],
            authStrategy=BASIC,
            environmentId=org.dev,
            organization=org.id,
            username="other",
        )
        assert payload(same)["authCredential"]["username"] == "other"
        invalid(patch(api, created["id"], organization=org.id + 1), "organization")


def test_patch_replaces_a_secret(org: Org, token_server: TokenServer) -> None:
    """The secret a PATCH sends is the one used from then on: the token server, which
    knows only one secret at a time, refuses the old one and accepts the new one."""
    token_server.expect.client_secret = "first-secret"
    with org.client() as api:
        created = create_ok(
            api, org.dev, **oauth_fields(token_server.url, clientSecret="first-secret")
        )
        assert try_token(api, created["id"])["success"] is True
        replaced = payload(patch(api, created["id"], clientSecret="second-secret"))
        assert replaced["authCredential"]["hasClientSecret"] is True
        # The server still wants the first secret: a PATCH that kept it would succeed here.
        refused = try_token(api, created["id"])
        assert refused["success"] is False, refused
        assert token_server.failures[-1] == "wrong client secret"
        token_server.expect.client_secret = "second-secret"
        assert try_token(api, created["id"])["success"] is True
    sent = token_server.seen[-1].headers["authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == "client-1:second-secret"


def test_patch_replaces_a_private_key(org: Org, token_server: TokenServer) -> None:
    """SMART: after a new privateKey, assertions are signed with it, not the old one."""
    old_key, new_key = ec_key(ec.SECP384R1()), ec_key(ec.SECP384R1())
    token_server.expect = Expect(
        client_id="smart-client", public_key=new_key.public_key(), algorithm="ES384"
    )
    with org.client() as api:
        created = create_ok(api, org.dev, **smart_fields(token_server.url, pem(old_key)))
        refused = try_token(api, created["id"])
        assert refused["success"] is False, refused
        assert "bad client assertion" in token_server.failures[-1]
        payload(patch(api, created["id"], privateKey=pem(new_key)))
        assert try_token(api, created["id"])["success"] is True


# --- DELETE -------------------------------------------------------------------------------------


def test_delete_refuses_while_destinations_use_it(org: Org) -> None:
    with org.client() as api:
        credential = create_ok(api, org.dev, **oauth_fields(TOKEN_URL))
        uses = [
            payload(destination(api, org.dev, name=n, authCredential=credential["id"]), 201)[
                "destination"
            ]
            for n in ("EHR feed", "Lab feed")
        ]
        refused = problem(api.delete(cred_url(credential["id"])), 409)
        for used in uses:
            assert used["name"] in refused["detail"]
            assert used["id"] in refused["detail"]
        assert get(api, credential["id"]) == credential
        # Detaching one leaves the other named.
        detached = api.patch(f"{API}/destinations/{uses[0]['id']}", json={"authCredential": None})
        assert payload(detached)["destination"]["authCredential"] is None
        refused = problem(api.delete(cred_url(credential["id"])), 409)
        assert uses[0]["id"] not in refused["detail"]
        assert uses[1]["id"] in refused["detail"]
        payload(api.delete(f"{API}/destinations/{uses[1]['id']}"))
        message = payload(api.delete(cred_url(credential["id"])))["message"]
        assert credential["id"] in message
        problem(api.get(cred_url(credential["id"])), 404)
        problem(api.delete(cred_url(credential["id"])), 404)
        assert listed(api, org.dev) == []


# --- destinations -------------------------------------------------------------------------------


def test_destination_accepts_a_credential_of_its_environment(org: Org) -> None:
    with org.client() as api:
        credential = create_ok(api, org.dev, **oauth_fields(TOKEN_URL))
        made = payload(destination(api, org.dev, authCredential=credential["id"]), 201)
        dest = made["destination"]
        assert dest["authCredential"] == credential["id"]
        fetched = payload(api.get(f"{API}/destinations/{dest['id']}"))["destination"]
        assert fetched["authCredential"] == credential["id"]
        # Attach by PATCH, detach with null.
        other = payload(destination(api, org.dev), 201)["destination"]
        assert other["authCredential"] is None
        url = f"{API}/destinations/{other['id']}"
        attached = payload(api.patch(url, json={"authCredential": credential["id"]}))
        assert attached["destination"]["authCredential"] == credential["id"]
        detached = payload(api.patch(url, json={"authCredential": None}))
        assert detached["destination"]["authCredential"] is None


def test_destination_refuses_a_credential_of_another_environment(org: Org, other_org: Org) -> None:
    with other_org.client() as api:
        foreign = create_ok(api, other_org.dev, **basic_fields())
    with org.client() as api:
        staged = create_ok(api, org.staging, **basic_fields())
        for wrong in (staged["id"], foreign["id"], str(uuid.uuid4())):
            invalid(destination(api, org.dev, authCredential=wrong), "authCredential")
        assert payload(api.get(f"{API}/environments/{org.dev}/destinations"))["destinations"] == []
        dest = payload(destination(api, org.dev), 201)["destination"]
        url = f"{API}/destinations/{dest['id']}"
        for wrong in (staged["id"], foreign["id"], str(uuid.uuid4())):
            invalid(api.patch(url, json={"authCredential": wrong}), "authCredential")
        assert payload(api.get(url))["destination"]["authCredential"] is None


# --- secrets at rest ----------------------------------------------------------------------------


def stored_secrets(server: Server, credential_id: str) -> dict[str, str]:
    async def go(db: Database) -> dict[str, str]:
        async with db.read() as conn:
            result = await conn.execute(
                sa.select(auth_credentials.c.secrets).where(auth_credentials.c.id == credential_id)
            )
            value: dict[str, str] = result.scalar_one()
            return value

    secrets: dict[str, str] = server.run(go)
    return secrets


def all_stored_text(server: Server) -> str:
    """Every credential row, every column, as the database returns it."""

    async def go(db: Database) -> str:
        async with db.read() as conn:
            rows = (await conn.execute(sa.select(auth_credentials))).all()
        return "\n".join(repr(tuple(row)) for row in rows)

    text: str = server.run(go)
    return text


def test_secrets_are_encrypted_at_rest(org: Org, server: Server) -> None:
    key = pem(rsa_key())
    plain = {
        "clientSecret": f"client-secret-{uuid.uuid4().hex}",
        "apiKeyValue": f"api-key-{uuid.uuid4().hex}",
        "password": f"password-{uuid.uuid4().hex}",
        "replaced": f"replaced-{uuid.uuid4().hex}",
    }
    with org.client() as api:
        oauth = create_ok(api, org.dev, **oauth_fields(TOKEN_URL, clientSecret=plain["replaced"]))
        payload(patch(api, oauth["id"], clientSecret=plain["clientSecret"]))
        create_ok(api, org.dev, **api_key_fields(apiKeyValue=plain["apiKeyValue"]))
        create_ok(api, org.dev, **basic_fields(password=plain["password"]))
        smart = create_ok(api, org.dev, **smart_fields(TOKEN_URL, key))
    secrets = stored_secrets(server, oauth["id"])
    assert set(secrets) == {"clientSecret"}
    assert secrets["clientSecret"].startswith("v1:")
    assert set(stored_secrets(server, smart["id"])) == {"privateKey"}
    key_line = key.splitlines()[1]
    stored = all_stored_text(server)
    for secret in [*plain.values(), key_line]:
        assert secret not in stored
    if server.backend == "sqlite":
        raw = sqlite_bytes(server)
        for secret in [*plain.values(), key_line]:
            assert secret.encode() not in raw
        # The check can see plaintext: the credential's non-secret fields are there.
        assert oauth["clientId"].encode() in raw
