"""Client assertions (RFC 7523, Redox's JWT flow), one copy for every kind of client:
the token request form, reading an assertion, checking its signature and claims, and
accepting each jti once. User keys (/v2/auth/token) and sources (/v2/auth/token,
/oauth/token) differ only in where the key comes from and what token they earn."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
import sqlalchemy as sa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from waypost import clock
from waypost.auth.tables import used_assertions
from waypost.db import Connection, canonical_id, is_unique_violation

ASSERTION_MAX_AGE = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=10)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY_NOT_FOUND = "Public key not found, check client_id, kid and Redox dashboard settings"
# Which signature algorithms each kind of key may use.
_ALGORITHMS: dict[tuple[object, object], set[str]] = {
    ("RSA", None): {"RS256", "RS384"},
    ("EC", "P-256"): {"ES256"},
    ("EC", "P-384"): {"ES384"},
}


class InvalidKeys(ValueError):
    """A JWKS that cannot be registered."""


class TokenError(Exception):
    """An OAuth error answer: {"error", "error_description", "error_uri"}."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def refuse(description: str) -> TokenError:
    return TokenError(401, "invalid_client", description)


def request_error(description: str) -> TokenError:
    return TokenError(400, "invalid_request", description)


def allowed_algorithms(jwk: dict[str, Any]) -> set[str]:
    allowed = _ALGORITHMS.get((jwk.get("kty"), jwk.get("crv") if jwk.get("kty") == "EC" else None))
    if allowed is None:
        raise InvalidKeys(f"key {jwk.get('kid')!r}: only RSA and EC P-256/P-384 keys are accepted")
    if "alg" in jwk:
        if jwk["alg"] not in allowed:
            raise InvalidKeys(f"key {jwk.get('kid')!r}: alg {jwk['alg']} does not fit the key")
        return {jwk["alg"]}
    return allowed


def public_key(jwk: dict[str, Any]) -> Any:
    loader = RSAAlgorithm if jwk.get("kty") == "RSA" else ECAlgorithm
    return loader.from_jwk(json.dumps(jwk))


def check_jwks(jwks: Any) -> list[dict[str, Any]]:
    """The keys of a JWKS, each public, parseable and named by a unique kid."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidKeys('a JWKS is a JSON object {"keys": [...]} with at least one key')
    kids: set[str] = set()
    for jwk in keys:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            raise InvalidKeys("every key needs a kid")
        if jwk["kid"] in kids:
            raise InvalidKeys(f"kid {jwk['kid']!r} appears twice")
        kids.add(jwk["kid"])
        if "d" in jwk:
            raise InvalidKeys(f"key {jwk['kid']!r} holds a private part; register public keys")
        allowed_algorithms(jwk)
        try:
            public_key(jwk)
        except (ValueError, jwt.exceptions.InvalidKeyError, KeyError, TypeError) as exc:
            raise InvalidKeys(f"key {jwk['kid']!r} does not parse: {exc}") from None
    return keys


def check_token_request(form: dict[str, str]) -> str:
    """Checks the form in Redox's documented order; returns the client assertion."""
    grant_type = form.get("grant_type")
    if not grant_type:
        raise request_error("Missing grant_type parameter")
    if grant_type != "client_credentials":
        raise request_error("The grant_type parameter should equal 'client_credentials'")
    assertion_type = form.get("client_assertion_type")
    if not assertion_type:
        raise request_error("Missing client assertion type")
    if assertion_type != CLIENT_ASSERTION_TYPE:
        raise request_error("Invalid client assertion type")
    assertion = form.get("client_assertion")
    if not assertion:
        raise request_error("Missing client assertion")
    return assertion


def _padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


@dataclass(frozen=True, slots=True)
class ClientAssertion:
    """An assertion read but not yet verified: enough to find the key that signed it."""

    jwt: str
    client_id: str  # the iss claim, a uuid
    kid: str | None  # None only where the caller allowed it
    alg: object  # as the header says; checked against the key's algorithms later


def read_assertion(
    assertion: str, *, kid_optional_for: frozenset[str] = frozenset()
) -> ClientAssertion:
    """The header and issuer of an assertion, with Redox's documented refusals. A kid is
    required unless the header's alg is in `kid_optional_for` (HS384: one secret)."""
    try:
        # The header is read as plain JSON: PyJWT would reject a non-string kid with
        # its own message, and Redox documents this one.
        header = json.loads(base64.urlsafe_b64decode(_padded(assertion.split(".")[0])))
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except (ValueError, jwt.exceptions.InvalidTokenError):
        raise request_error("The client assertion is not a JWT") from None
    if not isinstance(header, dict):
        raise request_error("The client assertion is not a JWT")
    kid = header.get("kid")
    if kid is None and header.get("alg") in kid_optional_for:
        pass
    elif not kid or not isinstance(kid, str):
        raise request_error("JWT header kid property is required")
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or canonical_id(client_id) is None:
        raise refuse(KEY_NOT_FOUND)
    return ClientAssertion(assertion, client_id, kid, header.get("alg"))


def verify_assertion(
    assertion: ClientAssertion,
    key: Any,
    algorithms: set[str],
    audience: str,
    moment: datetime,
) -> dict[str, Any]:
    """Checks the signature (by one of `algorithms`), aud, exp, iss = sub, iat within the
    past five minutes (10 s of skew) and the jti's form; returns the claims. That the
    jti is new is `remember_jti`'s check, in the transaction that issues the token."""
    if assertion.alg not in algorithms:
        raise refuse(f"alg must be one of {', '.join(sorted(algorithms))} for this key")
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion.jwt,
            key,
            algorithms=sorted(algorithms),
            audience=audience,
            options={"require": ["iss", "sub", "aud", "iat", "jti"], "verify_iat": False},
            leeway=CLOCK_SKEW,
        )
    except jwt.exceptions.InvalidAudienceError:
        raise refuse(f"aud must be the token URL, {audience}") from None
    except jwt.exceptions.ExpiredSignatureError:
        raise refuse("The client assertion has expired (exp)") from None
    except jwt.exceptions.MissingRequiredClaimError as exc:
        raise refuse(f"The client assertion lacks the {exc.claim} claim") from None
    except jwt.exceptions.InvalidTokenError as exc:
        raise refuse(f"The client assertion is invalid: {exc}") from None
    if claims["sub"] != assertion.client_id:
        raise refuse("iss and sub must both be the client id")
    issued = claims["iat"]
    if not isinstance(issued, int | float) or not (
        (moment - ASSERTION_MAX_AGE - CLOCK_SKEW).timestamp()
        <= issued
        <= (moment + CLOCK_SKEW).timestamp()
    ):
        raise refuse("iat must lie within the past 5 minutes")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= 255:
        raise refuse("jti must be a string of 1 to 255 characters")
    return claims


async def remember_jti(conn: Connection, client_id: str, jti: str, moment: datetime) -> None:
    """Accepts a jti once per client: run it in the transaction that issues the token."""
    # An assertion older than the window is refused anyway: its jti can be forgotten.
    await conn.execute(used_assertions.delete().where(used_assertions.c.expires_at < clock.now()))
    try:
        await conn.execute(
            used_assertions.insert(),
            {
                "client_id": client_id,
                "jti": jti,
                "expires_at": clock.format(moment + ASSERTION_MAX_AGE + CLOCK_SKEW),
            },
        )
    except sa.exc.IntegrityError as exc:
        if is_unique_violation(exc):
            raise refuse("This client assertion (jti) was already used") from None
        raise
