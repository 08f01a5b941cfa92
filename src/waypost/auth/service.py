"""Credentials that let a caller in: API tokens (issued once, stored as hashes,
revocable), registered public keys, and Redox's JWT exchange for five-minute tokens."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import sqlalchemy as sa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from waypost import clock
from waypost.audit.service import Actor, Event, record
from waypost.auth.tables import api_client_keys, api_clients, api_tokens, used_assertions
from waypost.crypto import hash_api_token, new_api_token
from waypost.db import Connection, Database, canonical_id, is_unique_violation, new_id
from waypost.organizations.tables import users

PLATFORM_TOKEN_SECONDS = 300  # Redox's access tokens last five minutes
ASSERTION_MAX_AGE = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=10)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Which signature algorithms each kind of key may use.
_ALGORITHMS: dict[tuple[object, object], set[str]] = {
    ("RSA", None): {"RS256", "RS384"},
    ("EC", "P-256"): {"ES256"},
    ("EC", "P-384"): {"ES384"},
}


class UnknownError(LookupError):
    """An id given on the command line names nothing."""


class InvalidKeys(ValueError):
    """A JWKS that cannot be registered."""


def _cli(organization_id: int, command: str) -> Actor:
    return Actor(organization_id, route=f"cli: waypost {command}")


async def _user(conn: Connection, user_id: str) -> Any:
    key = canonical_id(user_id)
    row = None
    if key is not None:
        row = (await conn.execute(sa.select(users).where(users.c.id == key))).first()
    if row is None:
        raise UnknownError(f"no user with id {user_id}")
    return row


async def issue_token(
    conn: Connection, user_id: str, *, expires_at: str | None = None, client_id: str | None = None
) -> tuple[str, str]:
    """Returns (token id, token). The token itself is never stored."""
    token = new_api_token()
    token_id = new_id()
    await conn.execute(
        api_tokens.insert(),
        {
            "id": token_id,
            "user_id": user_id,
            "token_hash": hash_api_token(token),
            "created_at": clock.now(),
            "expires_at": expires_at,
            "client_id": client_id,
        },
    )
    return token_id, token


async def create_token(db: Database, user_id: str) -> tuple[str, str]:
    async with db.write() as conn:
        user = await _user(conn, user_id)
        token_id, token = await issue_token(conn, user.id)
        await record(
            conn,
            _cli(user.organization_id, "tokens create"),
            Event("api-token-created", {"userId": user.id, "tokenId": token_id}),
        )
        return token_id, token


async def revoke_token(db: Database, token_id: str) -> None:
    async with db.write() as conn:
        row = (
            await conn.execute(
                sa.select(api_tokens.c.user_id, users.c.organization_id)
                .join(users, users.c.id == api_tokens.c.user_id)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            raise UnknownError(f"no active token with id {token_id}")
        await conn.execute(
            api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=clock.now())
        )
        await record(
            conn,
            _cli(row.organization_id, "tokens revoke"),
            Event("api-token-revoked", {"userId": row.user_id, "tokenId": token_id}),
        )


def _allowed_algorithms(jwk: dict[str, Any]) -> set[str]:
    allowed = _ALGORITHMS.get((jwk.get("kty"), jwk.get("crv") if jwk.get("kty") == "EC" else None))
    if allowed is None:
        raise InvalidKeys(f"key {jwk.get('kid')!r}: only RSA and EC P-256/P-384 keys are accepted")
    if "alg" in jwk:
        if jwk["alg"] not in allowed:
            raise InvalidKeys(f"key {jwk.get('kid')!r}: alg {jwk['alg']} does not fit the key")
        return {jwk["alg"]}
    return allowed


def _public_key(jwk: dict[str, Any]) -> Any:
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
        _allowed_algorithms(jwk)
        try:
            _public_key(jwk)
        except (ValueError, jwt.exceptions.InvalidKeyError, KeyError, TypeError) as exc:
            raise InvalidKeys(f"key {jwk['kid']!r} does not parse: {exc}") from None
    return keys


async def register_keys(db: Database, user_id: str, keys: list[dict[str, Any]]) -> str:
    """Registers a public key set for a user; returns its client id."""
    client_id = new_id()
    async with db.write() as conn:
        user = await _user(conn, user_id)
        await conn.execute(
            api_clients.insert(), {"id": client_id, "user_id": user.id, "created_at": clock.now()}
        )
        await conn.execute(
            api_client_keys.insert(),
            [{"client_id": client_id, "kid": jwk["kid"], "jwk": jwk} for jwk in keys],
        )
        await record(
            conn,
            _cli(user.organization_id, "keys create"),
            Event(
                "api-key-created",
                {"userId": user.id, "clientId": client_id, "kids": [k["kid"] for k in keys]},
            ),
        )
    return client_id


async def list_keys(db: Database, user_id: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        user = await _user(conn, user_id)
        rows = (
            await conn.execute(
                sa.select(api_clients, api_client_keys.c.kid)
                .outerjoin(api_client_keys, api_client_keys.c.client_id == api_clients.c.id)
                .where(api_clients.c.user_id == user.id)
                .order_by(api_clients.c.created_at, api_client_keys.c.kid)
            )
        ).all()
    clients: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = clients.setdefault(
            r.id,
            {"clientId": r.id, "createdAt": r.created_at, "revokedAt": r.revoked_at, "kids": []},
        )
        if r.kid is not None:
            entry["kids"].append(r.kid)
    return list(clients.values())


async def revoke_keys(db: Database, client_id: str) -> None:
    """Revokes a key set and the platform tokens it issued that are still live."""
    async with db.write() as conn:
        row = (
            await conn.execute(
                sa.select(api_clients.c.user_id, users.c.organization_id)
                .join(users, users.c.id == api_clients.c.user_id)
                .where(api_clients.c.id == client_id, api_clients.c.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            raise UnknownError(f"no active key set with client id {client_id}")
        revoked = clock.now()
        await conn.execute(
            api_clients.update().where(api_clients.c.id == client_id).values(revoked_at=revoked)
        )
        await conn.execute(
            api_tokens.update()
            .where(api_tokens.c.client_id == client_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=revoked)
        )
        await record(
            conn,
            _cli(row.organization_id, "keys revoke"),
            Event("api-key-revoked", {"userId": row.user_id, "clientId": client_id}),
        )


class TokenError(Exception):
    """An OAuth error answer: {"error", "error_description", "error_uri"}."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def _refuse(description: str) -> TokenError:
    return TokenError(401, "invalid_client", description)


def _request_error(description: str) -> TokenError:
    return TokenError(400, "invalid_request", description)


def _padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def check_token_request(form: dict[str, str]) -> str:
    """Checks the form in Redox's documented order; returns the client assertion."""
    grant_type = form.get("grant_type")
    if not grant_type:
        raise _request_error("Missing grant_type parameter")
    if grant_type != "client_credentials":
        raise _request_error("The grant_type parameter should equal 'client_credentials'")
    assertion_type = form.get("client_assertion_type")
    if not assertion_type:
        raise _request_error("Missing client assertion type")
    if assertion_type != CLIENT_ASSERTION_TYPE:
        raise _request_error("Invalid client assertion type")
    assertion = form.get("client_assertion")
    if not assertion:
        raise _request_error("Missing client assertion")
    return assertion


_key_query = (
    sa.select(api_client_keys.c.jwk, api_clients.c.user_id, users.c.organization_id)
    .join(api_clients, api_clients.c.id == api_client_keys.c.client_id)
    .join(users, users.c.id == api_clients.c.user_id)
    .where(
        api_client_keys.c.client_id == sa.bindparam("client_id"),
        api_client_keys.c.kid == sa.bindparam("kid"),
        api_clients.c.revoked_at.is_(None),
    )
)


async def exchange_assertion(
    db: Database, assertion: str, audience: str, request_ip: str | None
) -> str:
    """Verifies a client assertion (a JWT signed by a registered key) and issues a
    five-minute bearer token for the key's user."""
    try:
        # The header is read as plain JSON: PyJWT would reject a non-string kid with
        # its own message, and Redox documents this one.
        header = json.loads(base64.urlsafe_b64decode(_padded(assertion.split(".")[0])))
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except (ValueError, jwt.exceptions.InvalidTokenError):
        raise _request_error("The client assertion is not a JWT") from None
    if not isinstance(header, dict):
        raise _request_error("The client assertion is not a JWT")
    kid = header.get("kid")
    if not kid or not isinstance(kid, str):
        raise _request_error("JWT header kid property is required")
    client_id = unverified.get("iss")
    not_found = _refuse("Public key not found, check client_id, kid and Redox dashboard settings")
    if not isinstance(client_id, str) or canonical_id(client_id) is None:
        raise not_found
    async with db.read() as conn:
        key_row = (await conn.execute(_key_query, {"client_id": client_id, "kid": kid})).first()
    if key_row is None:
        raise not_found
    allowed = _allowed_algorithms(key_row.jwk)
    if header.get("alg") not in allowed:
        raise _refuse(f"alg must be one of {', '.join(sorted(allowed))} for this key")
    try:
        claims = jwt.decode(
            assertion,
            _public_key(key_row.jwk),
            algorithms=sorted(allowed),
            audience=audience,
            options={"require": ["iss", "sub", "aud", "iat", "jti"], "verify_iat": False},
            leeway=CLOCK_SKEW,
        )
    except jwt.exceptions.InvalidAudienceError:
        raise _refuse(f"aud must be the token URL, {audience}") from None
    except jwt.exceptions.ExpiredSignatureError:
        raise _refuse("The client assertion has expired (exp)") from None
    except jwt.exceptions.MissingRequiredClaimError as exc:
        raise _refuse(f"The client assertion lacks the {exc.claim} claim") from None
    except jwt.exceptions.InvalidTokenError as exc:
        raise _refuse(f"The client assertion is invalid: {exc}") from None
    if claims["sub"] != client_id:
        raise _refuse("iss and sub must both be the client id")
    moment = clock.utcnow()
    issued = claims["iat"]
    if not isinstance(issued, int | float) or not (
        (moment - ASSERTION_MAX_AGE - CLOCK_SKEW).timestamp()
        <= issued
        <= (moment + CLOCK_SKEW).timestamp()
    ):
        raise _refuse("iat must lie within the past 5 minutes")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= 255:
        raise _refuse("jti must be a string of 1 to 255 characters")
    expires_at = clock.after(PLATFORM_TOKEN_SECONDS, moment)
    async with db.write() as conn:
        # An assertion older than the window is refused anyway: its jti can be forgotten.
        await conn.execute(
            used_assertions.delete().where(used_assertions.c.expires_at < clock.now())
        )
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
                raise _refuse("This client assertion (jti) was already used") from None
            raise
        token_id, token = await issue_token(
            conn, key_row.user_id, expires_at=expires_at, client_id=client_id
        )
        await record(
            conn,
            Actor(key_row.organization_id, key_row.user_id, request_ip, "POST /v2/auth/token"),
            Event(
                "platform-token-issued",
                {"clientId": client_id, "kid": kid, "tokenId": token_id, "expiresAt": expires_at},
            ),
        )
    return token
