"""Fetching an access token for a credential, through the one guarded outbound module.

OAuth_2.0_2-legged sends a client_credentials request with Redox's configurable field
names; SMART_Backend sends one authenticated by a `private_key_jwt` client assertion, as
SMART Backend Services specifies. Neither the token nor a secret ever appears in an error.
"""

from __future__ import annotations

import base64
import math
import time
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus

import jwt
import orjson

from waypost.credentials.schemas import signing_algorithm
from waypost.credentials.strategies import CLIENT_CREDENTIALS, JSON, JWT_BEARER, StrategyName
from waypost.outbound import OutboundClient, OutboundError
from waypost.runtime.token_cache import Token

MAX_ANSWER_BYTES = 64 * 1024
# SMART Backend Services: the assertion expires no more than five minutes after it is made.
ASSERTION_LIFETIME_SECONDS = 240
# When the token server says nothing about expiry and the credential sets no default.
FALLBACK_EXPIRES_IN = 300
_MAX_DETAIL = 300


class TokenError(Exception):
    """No token (or headers) for a credential now: `message` says why in words, never
    with a secret; `status` is the token server's HTTP status if one came."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TokenFetchFailed(TokenError):
    """The token server could not be reached, refused, or gave no usable token: worth
    trying again later."""


class CredentialMissing(TokenError):
    """The credential no longer exists."""


class NoAccessToken(TokenError):
    """The credential's strategy sends its values as they are; there is no token."""


class SecretsUnreadable(TokenError):
    """No configured WAYPOST_SECRET_KEY opens the credential's secrets: only setting
    them again helps."""


async def fetch_token(
    outbound: OutboundClient,
    strategy: str,
    settings: Mapping[str, Any],
    secrets: Mapping[str, str],
    *,
    timeout_seconds: float,
) -> Token:
    """`settings` are the effective non-secret fields (defaults applied); `secrets` the
    decrypted secret fields."""
    if strategy == StrategyName.SMART:
        headers, body, as_json, hidden = _smart_request(settings, secrets)
    elif strategy == StrategyName.OAUTH2:
        headers, body, as_json, hidden = _oauth2_request(settings, secrets)
    else:
        raise NoAccessToken(f"the {strategy} strategy has no token to fetch")
    try:
        answer = await outbound.request(
            "POST",
            settings["url"],
            headers={"Accept": "application/json", **headers},
            json=body if as_json else None,
            data=None if as_json else body,
            timeout_seconds=timeout_seconds,
            max_body=MAX_ANSWER_BYTES,
        )
    except OutboundError as exc:
        raise TokenFetchFailed(f"could not reach the token server: {exc.message}") from None
    return _read_answer(
        answer.status,
        answer.headers,
        answer.body,
        answer.location,
        settings,
        hidden,
    )


def _oauth2_request(
    settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str], bool, list[str]]:
    client_id = settings["clientId"]
    secret = secrets["clientSecret"]
    body = {settings["grantTypeName"]: settings["grantType"]}
    for field, parameter in (
        ("scopes", "scope"),
        ("audience", "audience"),
        ("resource", "resource"),
    ):
        if settings.get(field) is not None:
            body[parameter] = settings[field]
    if settings.get("customFieldName") is not None:
        body[settings["customFieldName"]] = settings["customFieldValue"]
    headers: dict[str, str] = {}
    if settings["noBasic"]:
        body[settings["clientIdName"]] = client_id
        body[settings["clientSecretName"]] = secret
    else:
        # RFC 6749 2.3.1: both are form-encoded before they are joined.
        pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return headers, body, settings["contentType"] == JSON, [secret]


def client_assertion(
    client_id: str, token_url: str, private_key: str, key_id: str | None, *, now: float
) -> str:
    """The SMART Backend Services client assertion: a JWT signed with the client's key."""
    issued = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_SECONDS,
        "jti": str(uuid.uuid4()),
    }
    headers = {"typ": "JWT", **({"kid": key_id} if key_id else {})}
    algorithm = signing_algorithm(private_key)
    return jwt.encode(claims, private_key, algorithm=algorithm, headers=headers)


def _smart_request(
    settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str], bool, list[str]]:
    assertion = client_assertion(
        settings["clientId"],
        settings["url"],
        secrets["privateKey"],
        settings.get("keyId"),
        now=time.time(),
    )
    body = {
        "grant_type": CLIENT_CREDENTIALS,
        "scope": settings["scopes"],
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
    }
    return {}, body, False, [assertion, secrets["privateKey"]]


def _read_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    location: str | None,
    settings: Mapping[str, Any],
    hidden: Iterable[str],
) -> Token:
    if 300 <= status < 400:
        where = f" to {location}" if location else ""
        raise TokenFetchFailed(
            f"the token server answered HTTP {status}, a redirect{where}; redirects are not "
            "followed, so use the final token URL",
            status,
        )
    parsed: Any
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if not 200 <= status < 300:
        raise TokenFetchFailed(
            f"the token server answered HTTP {status}{_oauth_error(parsed, hidden)}", status
        )
    if parsed is None:
        kind = headers.get("Content-Type") or "no Content-Type"
        raise TokenFetchFailed(
            f"the token server answered HTTP {status} but its body is not JSON ({kind})", status
        )
    if not isinstance(parsed, dict):
        raise TokenFetchFailed(
            f"the token server answered HTTP {status} but its JSON is not an object", status
        )
    name = settings.get("accessTokenName", "access_token")
    token = parsed.get(name)
    if not isinstance(token, str) or not token:
        raise TokenFetchFailed(
            f'the token server answered HTTP {status} but its JSON has no "{name}" string',
            status,
        )
    expires_field = settings.get("expiresFieldName", "expires_in")
    expires_in = _seconds(parsed.get(expires_field))
    if parsed.get(expires_field) is not None and expires_in is None:
        raise TokenFetchFailed(
            f'the token server answered HTTP {status} but "{expires_field}" is not a positive '
            "number of seconds",
            status,
        )
    if expires_in is None:
        expires_in = settings.get("defaultExpirationSeconds") or FALLBACK_EXPIRES_IN
    return Token(token, expires_in, status)


def _seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and 0 < value < 10**9:
        return int(value)
    return None


def _oauth_error(parsed: Any, hidden: Iterable[str]) -> str:
    """The RFC 6749 `error` and `error_description`, if given, without any secret."""
    if not isinstance(parsed, dict):
        return ""
    parts = [
        str(parsed[key])
        for key in ("error", "error_description")
        if isinstance(parsed.get(key), str) and parsed[key]
    ]
    if not parts:
        return ""
    text = ": ".join(parts)
    for secret in hidden:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return f" ({text})"
