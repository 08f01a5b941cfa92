"""POST /authcredentials/{id}/test against a real token server on loopback, on both backends.

The token server (tests/credentials/token_server.py) is strict: a request that puts the
secret in the wrong place, names a field differently or forgets a scope is refused, so a
success here means Waypost sent exactly what the credential says. The shared test servers
give up on a token server after 2 s (WAYPOST_VERIFY_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.credentials.helpers import (
    api_key_fields,
    basic_fields,
    create_ok,
    ec_key,
    invalid,
    oauth_fields,
    patch,
    payload,
    pem,
    rsa_key,
    smart_fields,
    try_token,
)
from tests.credentials.token_server import JWT_BEARER, Expect, TokenServer
from tests.support import Org, free_port
from waypost.credentials.tokens import TokenError, fetch_token
from waypost.outbound import OutboundClient

SCOPES = "system/Patient.rs system/Observation.rs"


def oauth(api: httpx.Client, org: Org, url: str, **fields: Any) -> str:
    credential_id: str = create_ok(api, org.dev, **oauth_fields(url, **fields))["id"]
    return credential_id


def assert_success(result: dict[str, Any], expires_in: int = 3600) -> None:
    assert result == {"success": True, "status": 200, "error": None, "expiresIn": expires_in}


def assert_failure(result: dict[str, Any], status: int | None, *words: str) -> str:
    assert result["success"] is False
    assert result["status"] == status
    assert result["expiresIn"] is None
    error: str = result["error"]
    for word in words:
        assert word in error, error
    return error


# --- OAuth_2.0_2-legged -------------------------------------------------------------------------


def test_client_credentials_with_http_basic(org: Org, token_server: TokenServer) -> None:
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url)
        answer = api.post(f"/platform/v1/authcredentials/{credential_id}/test")
        assert_success(payload(answer))
    assert token_server.issued == 1
    seen = token_server.seen[-1]
    assert seen.headers["authorization"].startswith("Basic ")
    assert seen.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert seen.params == {"grant_type": "client_credentials"}
    # The token never comes back out.
    assert "token-1-" not in answer.text


def test_secret_with_reserved_characters_is_form_encoded_in_basic(
    org: Org, token_server: TokenServer
) -> None:
    token_server.expect.client_secret = "p:a+s s/w%rd"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url, clientSecret="p:a+s s/w%rd")
        assert_success(try_token(api, credential_id))


@pytest.mark.parametrize("no_basic", [True, "true"])
def test_no_basic_puts_the_client_in_the_body(
    org: Org, token_server: TokenServer, no_basic: Any
) -> None:
    token_server.expect.placement = "body"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url, noBasic=no_basic)
        assert_success(try_token(api, credential_id))
    seen = token_server.seen[-1]
    assert "authorization" not in seen.headers
    assert seen.params["client_id"] == "client-1"
    assert seen.params["client_secret"] == "s3cret-value"


@pytest.mark.parametrize("no_basic", [False, "false"])
def test_no_basic_false_uses_http_basic(org: Org, token_server: TokenServer, no_basic: Any) -> None:
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url, noBasic=no_basic)
        assert_success(try_token(api, credential_id))
        # A server that wants the secret in the body refuses Basic.
        token_server.expect.placement = "body"
        assert_failure(try_token(api, credential_id), 401, "HTTP 401", "invalid_client")


def test_json_body_and_redox_field_names(org: Org) -> None:
    expect = Expect(
        placement="body",
        content_type="application/json",
        grant_type_name="grantType",
        client_id_name="clientKey",
        client_secret_name="clientPassword",
        token_field="accessToken",
        expires_field="expiresAfter",
        expires_in="120",  # some servers send a string
    )
    with TokenServer(expect) as server, org.client() as api:
        credential_id = oauth(
            api,
            org,
            server.url,
            noBasic="true",
            contentType="application/json",
            grantTypeName="grantType",
            clientIdName="clientKey",
            clientSecretName="clientPassword",
            accessTokenName="accessToken",
            expiresFieldName="expiresAfter",
        )
        assert_success(try_token(api, credential_id), expires_in=120)
        assert server.issued == 1
        # The same credential with the default names is refused by this server.
        payload(patch(api, credential_id, clientIdName=None))
        assert_failure(try_token(api, credential_id), 401, "unknown client")


def test_scopes_audience_resource_and_custom_field_are_sent(org: Org) -> None:
    params = {
        "scope": "read write",
        "audience": "https://api.example.org",
        "resource": "https://fhir.example.org/r4",
        "tenant": "acme",
    }
    with TokenServer(Expect(params=params)) as server, org.client() as api:
        credential_id = oauth(
            api,
            org,
            server.url,
            scopes="read write",
            audience="https://api.example.org",
            resource="https://fhir.example.org/r4",
            customFieldName="tenant",
            customFieldValue="acme",
        )
        assert_success(try_token(api, credential_id))
        assert server.seen[-1].params == {"grant_type": "client_credentials", **params}
        payload(patch(api, credential_id, scopes="read"))
        assert_failure(try_token(api, credential_id), 401, "scope is 'read'")


def test_wrong_secret_fails_clearly_without_revealing_it(
    org: Org, token_server: TokenServer
) -> None:
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url, clientSecret="not-the-secret")
        result = try_token(api, credential_id)
    error = assert_failure(result, 401, "HTTP 401", "invalid_client", "wrong client secret")
    assert "not-the-secret" not in error
    assert token_server.issued == 0


def test_a_secret_echoed_by_the_server_is_redacted(org: Org, token_server: TokenServer) -> None:
    token_server.expect.placement = "body"
    token_server.expect.client_id = "someone-else"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url, noBasic=True)
        token_server.mode = "echo"
        result = try_token(api, credential_id)
    error = assert_failure(result, 401, "[redacted]")
    assert "s3cret-value" not in error


def test_a_new_secret_is_what_the_token_server_sees(org: Org, token_server: TokenServer) -> None:
    token_server.expect.placement = "body"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url, noBasic=True, clientSecret="old-secret")
        assert_failure(try_token(api, credential_id), 401, "wrong client secret")
        assert token_server.seen[-1].params["client_secret"] == "old-secret"
        assert payload(patch(api, credential_id, clientSecret="s3cret-value"))
        assert_success(try_token(api, credential_id))
        assert token_server.seen[-1].params["client_secret"] == "s3cret-value"


def test_nothing_listening(org: Org) -> None:
    with org.client() as api:
        credential_id = oauth(api, org, f"http://127.0.0.1:{free_port()}/token")
        assert_failure(try_token(api, credential_id), None, "could not reach", "refused")


def test_not_found(org: Org, token_server: TokenServer) -> None:
    token_server.mode = "404"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url)
        assert_failure(try_token(api, credential_id), 404, "HTTP 404")


def test_timeout(org: Org, token_server: TokenServer) -> None:
    token_server.mode = "sleep"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url)
        started = time.monotonic()
        result = try_token(api, credential_id)
        assert time.monotonic() - started < 4.5
    assert_failure(result, None, "could not reach", "within 2 s")


def test_non_json_answer(org: Org, token_server: TokenServer) -> None:
    token_server.mode = "html"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url)
        assert_failure(try_token(api, credential_id), 200, "not JSON", "text/html")


def test_answer_without_a_token(org: Org, token_server: TokenServer) -> None:
    token_server.mode = "garbage"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url)
        assert_failure(try_token(api, credential_id), 200, '"access_token"')


@pytest.mark.parametrize(("default", "expected"), [(900, 900), (None, 300)])
def test_expiry_when_the_answer_has_none(
    org: Org, token_server: TokenServer, default: int | None, expected: int
) -> None:
    token_server.expect.expires_in = None
    extra = {"defaultExpirationSeconds": default} if default else {}
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url, **extra)
        assert_success(try_token(api, credential_id), expires_in=expected)


def test_unusable_expiry_fails(org: Org, token_server: TokenServer) -> None:
    token_server.expect.expires_in = "soon"
    with org.client() as api:
        credential_id = oauth(api, org, token_server.url)
        assert_failure(try_token(api, credential_id), 200, '"expires_in"', "number of seconds")


@pytest.mark.parametrize("fields", [api_key_fields(), basic_fields()])
def test_header_strategies_have_nothing_to_test(org: Org, fields: dict[str, Any]) -> None:
    with org.client() as api:
        credential_id = create_ok(api, org.dev, **fields)["id"]
        answer = api.post(f"/platform/v1/authcredentials/{credential_id}/test")
        assert "no token to fetch" in invalid(answer, "authStrategy")


async def test_the_outbound_guard_applies_to_token_requests(token_server: TokenServer) -> None:
    guarded = OutboundClient()  # no exceptions: loopback is refused
    try:
        with pytest.raises(TokenError) as refused:
            await fetch_token(
                guarded,
                "OAuth_2.0_2-legged",
                {
                    "url": token_server.url,
                    "clientId": "client-1",
                    "grantType": "client_credentials",
                    "grantTypeName": "grant_type",
                    "noBasic": False,
                    "contentType": "application/x-www-form-urlencoded",
                },
                {"clientSecret": "s3cret-value"},
                timeout_seconds=2,
            )
    finally:
        await guarded.close()
    assert "outbound guard" in refused.value.message
    assert refused.value.status is None
    assert token_server.seen == []


# --- SMART_Backend ------------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "key_id"), [("RS384", "key-2026"), ("ES384", None)])
def test_smart_backend_services_client_assertion(
    org: Org, algorithm: str, key_id: str | None
) -> None:
    key = rsa_key() if algorithm == "RS384" else ec_key(ec.SECP384R1())
    expect = Expect(
        client_id="smart-client",
        content_type="application/x-www-form-urlencoded",
        params={"scope": SCOPES},
        public_key=key.public_key(),
        algorithm=algorithm,
        key_id=key_id,
    )
    with TokenServer(expect) as server, org.client() as api:
        extra = {"keyId": key_id} if key_id else {}
        credential_id = create_ok(api, org.dev, **smart_fields(server.url, pem(key), **extra))["id"]
        assert_success(try_token(api, credential_id))
        # Each assertion is new: a replayed jti would be refused.
        assert_success(try_token(api, credential_id))
        assert server.failures == []
        assert server.issued == 2
        seen = server.seen[-1]
        assert seen.params["client_assertion_type"] == JWT_BEARER
        assert seen.params["grant_type"] == "client_credentials"
        assert "authorization" not in seen.headers
        assert len(server.jtis) == 2


def test_smart_assertion_signed_with_another_key_is_refused(org: Org) -> None:
    registered = ec_key(ec.SECP384R1())
    expect = Expect(
        client_id="smart-client",
        params={"scope": SCOPES},
        public_key=registered.public_key(),
        algorithm="ES384",
    )
    with TokenServer(expect) as server, org.client() as api:
        other = pem(ec_key(ec.SECP384R1()))
        credential_id = create_ok(api, org.dev, **smart_fields(server.url, other))["id"]
        assert_failure(try_token(api, credential_id), 401, "bad client assertion")
        # The right key, set by PATCH, works.
        assert payload(patch(api, credential_id, privateKey=pem(registered)))
        assert_success(try_token(api, credential_id))


def test_smart_kid_must_match(org: Org) -> None:
    key = rsa_key()
    expect = Expect(
        client_id="smart-client",
        params={"scope": SCOPES},
        public_key=key.public_key(),
        key_id="expected-kid",
    )
    with TokenServer(expect) as server, org.client() as api:
        credential_id = create_ok(api, org.dev, **smart_fields(server.url, pem(key), keyId="x"))[
            "id"
        ]
        assert_failure(try_token(api, credential_id), 401, "kid")
        assert payload(patch(api, credential_id, keyId="expected-kid"))
        assert_success(try_token(api, credential_id))
