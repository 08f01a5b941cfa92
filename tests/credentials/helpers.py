"""Helpers for the auth credential tests: requests, answers, keys."""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

API = "/platform/v1"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
OAUTH = "OAuth_2.0_2-legged"
SMART = "SMART_Backend"
API_KEY = "ApiKeyHeader"
BASIC = "BasicAuth"
SECRET_FIELDS = ("clientSecret", "privateKey", "apiKeyValue", "password")


def cred_url(credential_id: str) -> str:
    return f"{API}/authcredentials/{credential_id}"


def env_creds_url(env_id: str) -> str:
    return f"{API}/environments/{env_id}/authcredentials"


def payload(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """Asserts the success envelope and returns its payload."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(JSON)
    body = response.json()
    assert set(body) == {"meta", "payload"}
    assert body["meta"]["version"] == "1.0.0"
    result: dict[str, Any] = body["payload"]
    return result


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Asserts an RFC 9457 problem+json answer with the given status and returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    return body


def invalid(response: httpx.Response, field: str) -> str:
    """Asserts a 422 naming `field`; returns the message given for it."""
    body = problem(response, 422)
    named: dict[str, str] = {e["field"]: e["message"] for e in body["errors"]}
    assert field in named, f"expected {field} in {named}"
    return named[field]


def oauth_fields(url: str, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "authStrategy": OAUTH,
        "grantType": "client_credentials",
        "url": url,
        "clientId": "client-1",
        "clientSecret": "s3cret-value",
    }
    fields.update(overrides)
    return fields


def smart_fields(url: str, private_key: str, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "authStrategy": SMART,
        "url": url,
        "clientId": "smart-client",
        "privateKey": private_key,
        "scopes": "system/Patient.rs system/Observation.rs",
    }
    fields.update(overrides)
    return fields


def api_key_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "authStrategy": API_KEY,
        "headerName": "X-Api-Key",
        "apiKeyValue": "key-0123456789",
    }
    fields.update(overrides)
    return fields


def basic_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"authStrategy": BASIC, "username": "svc", "password": "pw-0123"}
    fields.update(overrides)
    return fields


def create(api: httpx.Client, env_id: str, name: str = "cred", **fields: Any) -> httpx.Response:
    body = {"environmentId": env_id, "name": name, **fields}
    return api.post(f"{API}/authcredentials", json=body)


def create_ok(api: httpx.Client, env_id: str, **fields: Any) -> dict[str, Any]:
    result = payload(create(api, env_id, **fields), 201)
    assert set(result) == {"authCredential"}
    credential: dict[str, Any] = result["authCredential"]
    assert_no_secret_values(credential)
    return credential


def get(api: httpx.Client, credential_id: str) -> dict[str, Any]:
    credential: dict[str, Any] = payload(api.get(cred_url(credential_id)))["authCredential"]
    assert_no_secret_values(credential)
    return credential


def patch(api: httpx.Client, credential_id: str, **fields: Any) -> httpx.Response:
    return api.patch(cred_url(credential_id), json=fields)


def listed(api: httpx.Client, env_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = payload(api.get(env_creds_url(env_id)))["credentials"]
    return items


def try_token(api: httpx.Client, credential_id: str) -> dict[str, Any]:
    """POST /test; asserts 200 and returns {success, status, error, expiresIn}."""
    result = payload(api.post(f"{cred_url(credential_id)}/test"))
    assert set(result) == {"success", "status", "error", "expiresIn"}
    return result


def assert_no_secret_values(credential: dict[str, Any]) -> None:
    for name in SECRET_FIELDS:
        assert name not in credential


@cache
def _rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return _rsa_key(bits)


def ec_key(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve)


def pem(key: PrivateKeyTypes, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
