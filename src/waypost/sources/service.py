"""Source rules: who may manage sources and their keys, how a source proves who it is,
and which source a send-API token belongs to.

A legacy API key is the source's id plus a secret. The secret is kept twice, neither
time readable from the database alone: as a SHA-256 hash, which /auth/authenticate
compares, and sealed with the SecretBox (AES-GCM under WAYPOST_SECRET_KEY, bound to the
source), because Source Auth v2 lets the source sign an HS384 assertion with it and
checking that signature needs the secret itself. An OAuth API key is a JWKS, given
inline or as a URL fetched (through the outbound guard) when a token is requested.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from waypost import clock
from waypost.access import Action, Principal, require_environment_role
from waypost.audit import service as audit
from waypost.audit.service import ActionType, audited_write
from waypost.auth.assertions import (
    KEY_NOT_FOUND,
    InvalidKeys,
    TokenError,
    allowed_algorithms,
    check_jwks,
    public_key,
    read_assertion,
    refuse,
    remember_jti,
    request_error,
    verify_assertion,
)
from waypost.crypto import SecretBox, hash_api_token, new_api_token
from waypost.db import Connection, Database, canonical_id, new_id
from waypost.fields import https_refusal
from waypost.http import Conflict, Invalid, Unauthorized
from waypost.kinds import EnvironmentFlag
from waypost.organizations.service import environment_access
from waypost.runtime import Runtime
from waypost.runtime.jwks_cache import JwksUnavailable
from waypost.sources import store
from waypost.sources.schemas import (
    ApiKeyCreate,
    ApiKeyOut,
    SourceEnvironment,
    SourceOut,
    SourceUpdate,
    SourceWithSecret,
    TokenPair,
)
from waypost.sources.store import SendingSource, SourceRow

__all__ = ["SendingSource", "get_source", "source_for_token"]

LEGACY_TOKEN_SECONDS = 24 * 3600  # Redox: a legacy access token lasts 24 hours
OAUTH_TOKEN_SECONDS = 300  # Redox: an OAuth access token lasts five minutes
REFRESH_TOKEN_SECONDS = 30 * 24 * 3600  # Redox documents none; a month, used once
SECRET_GRACE_SECONDS = 24 * 3600  # a replaced secret keeps working this long
# Redox's Source Auth v2 algorithms: public keys sign RS384 or ES384, a secret HS384.
SOURCE_AUTH_V2_KEY_ALGORITHMS = frozenset({"RS384", "ES384"})
SECRET_ALGORITHM = "HS384"  # noqa: S105 - an algorithm name, not a secret
_WHAT = "source"
_WHAT_KEY = "OAuth API key"

TokenRoute = Literal["/v2/auth/token", "/oauth/token"]


# --- the send API's side ---------------------------------------------------------------


async def source_for_token(db: Database, token: str) -> SendingSource | None:
    """The source a send-API bearer token belongs to; None when unknown or expired."""
    params = {"token_hash": hash_api_token(token), "now": clock.now()}
    async with db.read() as conn:
        return await store.sending_source(conn, **params)


async def get_source(conn_or_db: Connection | Database, source_id: str) -> SendingSource | None:
    """The source with this id, or None (also for a malformed id)."""
    key = canonical_id(source_id)
    if key is None:
        return None
    if isinstance(conn_or_db, Database):
        async with conn_or_db.read() as conn:
            row = await store.source_by_id(conn, key)
    else:
        row = await store.source_by_id(conn_or_db, key)
    return row.sending if row is not None else None


# --- views -------------------------------------------------------------------------------


def _environment(row: SourceRow) -> SourceEnvironment:
    return SourceEnvironment(
        id=row.environment_id, environment_flag=EnvironmentFlag(row.environment_flag)
    )


def source_view(row: SourceRow) -> SourceOut:
    return SourceOut(
        id=row.id,
        name=row.name,
        environment=_environment(row),
        api_key=None if row.is_oauth_key else row.id,
        has_secret=row.secret_hash is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _with_secret(row: SourceRow, secret: str) -> SourceWithSecret:
    return SourceWithSecret(**source_view(row).model_dump(), secret=secret)


def apikey_view(row: SourceRow) -> ApiKeyOut:
    return ApiKeyOut(
        id=row.id,
        name=row.name,
        jwks_url=row.jwks_url,
        jwk_set=row.jwk_set,
        environment=_environment(row),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --- managing sources ----------------------------------------------------------------------


def _secret_context(source_id: str) -> str:
    return f"source:{source_id}:secret"


def _new_secret(box: SecretBox, source_id: str) -> tuple[str, dict[str, str]]:
    """A fresh secret (384 random bits: enough for HS384) and the columns that keep it."""
    secret = secrets.token_urlsafe(48)
    return secret, {
        "secret_hash": hash_api_token(secret),
        "secret_sealed": box.encrypt(secret, _secret_context(source_id)),
    }


async def _access(
    conn: Connection, principal: Principal, source_id: str, action: Action, *, oauth_key: bool
) -> SourceRow:
    """The source, if the caller may see it (and for WRITE, change it); an OAuth-key
    lookup (`oauth_key`) sees only sources whose key is a JWKS."""
    what = _WHAT_KEY if oauth_key else _WHAT
    key = canonical_id(source_id)
    row = None
    if key is not None:
        row = await store.source_for_caller(
            conn,
            key,
            user_id=principal.user_id,
            organization_id=principal.organization_id,
            for_update=action is Action.WRITE,
        )
    if row is not None and oauth_key and not row.is_oauth_key:
        row = None
    require_environment_role(row.role if row else None, action, what=what)
    assert row is not None
    return row


def _row(values: Mapping[str, Any], flag: EnvironmentFlag) -> SourceRow:
    """A source just inserted with these column values, as the answer shows it."""
    return SourceRow.of(
        {
            "seq": 0,
            "flag": flag,
            "organization_id": 0,
            "previous_secret_hash": None,
            "previous_secret_sealed": None,
            "previous_secret_expires_at": None,
            **values,
        }
    )


async def create_source(
    rt: Runtime, principal: Principal, *, environment_id: str, name: str
) -> SourceWithSecret:
    """A source with a legacy API key; the answer shows its secret, once."""
    source_id = new_id()
    secret, kept = _new_secret(rt.secret_box, source_id)
    created = clock.now()
    async with audited_write(rt.db, principal, "source-created") as (conn, event):
        environment = await environment_access(
            conn, principal, environment_id, Action.WRITE, what=_WHAT
        )
        values = {
            "id": source_id,
            "environment_id": environment.id,
            "name": name,
            **kept,
            "jwks_url": None,
            "jwk_set": None,
            "created_at": created,
            "updated_at": created,
        }
        await store.insert_source(conn, values)
        event.details = {
            "sourceId": source_id,
            "environmentId": environment.id,
            "fields": {"name": {"old": None, "new": name}, "secret": audit.REDACTED},
        }
    return _with_secret(_row(values, environment.flag), secret)


async def list_sources(
    rt: Runtime, principal: Principal, *, environment_id: str, oauth_keys_only: bool = False
) -> list[SourceRow]:
    what = _WHAT_KEY if oauth_keys_only else _WHAT
    async with rt.db.read() as conn:
        environment = await environment_access(
            conn, principal, environment_id, Action.READ, what=what
        )
        return await store.sources_in_environment(
            conn, environment.id, oauth_keys_only=oauth_keys_only
        )


async def read_source(
    rt: Runtime, principal: Principal, *, source_id: str, oauth_key: bool = False
) -> SourceRow:
    async with rt.db.read() as conn:
        return await _access(conn, principal, source_id, Action.READ, oauth_key=oauth_key)


async def update_source(
    rt: Runtime, principal: Principal, *, source_id: str, body: SourceUpdate
) -> SourceRow:
    async with audited_write(rt.db, principal, "source-updated") as (conn, event):
        event.details["sourceId"] = source_id
        row = await _access(conn, principal, source_id, Action.WRITE, oauth_key=False)
        changes: dict[str, Any] = {}
        if "name" in body.model_fields_set:
            if body.name is None:
                raise Invalid("name", "must not be null")
            changes["name"] = body.name
        event.details["changes"] = audit.changes({"name": row.name}, changes, secrets=frozenset())
        if changes:
            changes["updated_at"] = clock.now()
            await store.update_source(conn, row.seq, changes)
    return _replace(row, changes)


def _replace(row: SourceRow, changes: dict[str, Any]) -> SourceRow:
    fields = {name: getattr(row, name) for name in SourceRow.__dataclass_fields__}
    return SourceRow(**{**fields, **{k: v for k, v in changes.items() if k in fields}})


async def delete_source(
    rt: Runtime, principal: Principal, *, source_id: str, oauth_key: bool = False
) -> str:
    """Deletes the source and every token it holds."""
    what = _WHAT_KEY if oauth_key else _WHAT
    event_type: ActionType = "apikey-deleted" if oauth_key else "source-deleted"
    async with audited_write(rt.db, principal, event_type) as (conn, event):
        event.details["apikeyId" if oauth_key else "sourceId"] = source_id
        row = await _access(conn, principal, source_id, Action.WRITE, oauth_key=oauth_key)
        event.details["name"] = row.name
        await store.delete_source(conn, row.seq)
    if row.jwks_url is not None:
        rt.jwks.forget(row.jwks_url)
    return f"The {what} {row.id} was deleted; its tokens no longer work."


async def rotate_secret(rt: Runtime, principal: Principal, *, source_id: str) -> SourceWithSecret:
    """A new secret, shown once. The one it replaces keeps working for 24 hours (a secret
    replaced before then stops at once: only the newest old secret has a grace period)."""
    async with audited_write(rt.db, principal, "source-secret-rotated") as (conn, event):
        event.details["sourceId"] = source_id
        row = await _access(conn, principal, source_id, Action.WRITE, oauth_key=False)
        if row.is_oauth_key:
            raise Conflict(
                "This source authenticates with an OAuth API key (a JWKS); it has no secret."
            )
        secret, kept = _new_secret(rt.secret_box, row.id)
        moment = clock.utcnow()
        changes = {
            **kept,
            "previous_secret_hash": row.secret_hash,
            "previous_secret_sealed": row.secret_sealed,
            "previous_secret_expires_at": clock.after(SECRET_GRACE_SECONDS, moment)
            if row.secret_hash is not None
            else None,
            "updated_at": clock.format(moment),
        }
        await store.update_source(conn, row.seq, changes)
        event.details["previousSecretExpiresAt"] = changes["previous_secret_expires_at"]
    return _with_secret(_replace(row, changes), secret)


async def create_apikey(
    rt: Runtime, principal: Principal, *, environment_id: str, body: ApiKeyCreate
) -> SourceRow:
    """A source whose key is a JWKS: inline (`jwkSet`) or at a URL (`jwksURL`)."""
    if (body.jwks_url is None) == (body.jwk_set is None):
        raise Invalid("jwkSet", "give exactly one of jwksURL and jwkSet")
    jwk_set = None
    if body.jwk_set is not None:
        try:
            jwk_set = {"keys": check_jwks(body.jwk_set)}
        except InvalidKeys as exc:
            raise Invalid("jwkSet", str(exc)) from None
    source_id = new_id()
    created = clock.now()
    async with audited_write(rt.db, principal, "apikey-created") as (conn, event):
        environment = await environment_access(
            conn, principal, environment_id, Action.WRITE, what=_WHAT_KEY
        )
        if (refusal := https_refusal(body.jwks_url, environment.flag)) is not None:
            raise Invalid("jwksURL", refusal)
        values = {
            "id": source_id,
            "environment_id": environment.id,
            "name": body.name,
            "secret_hash": None,
            "secret_sealed": None,
            "jwks_url": body.jwks_url,
            "jwk_set": jwk_set,
            "created_at": created,
            "updated_at": created,
        }
        await store.insert_source(conn, values)
        event.details = {
            "apikeyId": source_id,
            "environmentId": environment.id,
            "name": body.name,
            "jwksURL": body.jwks_url,
            "kids": [k["kid"] for k in jwk_set["keys"]] if jwk_set else None,
        }
    return _row(values, environment.flag)


# --- how a source proves who it is ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int


def _legacy_expiry(seconds: int, moment: Any) -> str:
    # Redox's legacy answers show milliseconds (2015-03-25T20:52:35.000Z); the stored form
    # has microseconds at the same place.
    return clock.after(seconds, moment)[:23] + "Z"


async def _issue(
    conn: Connection, row: SourceRow, moment: Any, seconds: int, route: str, ip: str | None
) -> str:
    now = clock.format(moment)
    await store.forget_expired_tokens(conn, source_id=row.id, now=now)
    token = new_api_token()
    await store.insert_token(
        conn,
        token_hash=hash_api_token(token),
        source_id=row.id,
        kind=store.ACCESS,
        now=now,
        expires_at=clock.after(seconds, moment),
    )
    await audit.record(
        conn,
        audit.Actor(row.organization_id, None, ip, f"POST {route}"),
        audit.Event(
            "source-token-issued",
            {"sourceId": row.id, "expiresAt": clock.after(seconds, moment)},
        ),
    )
    return token


async def _issue_pair(
    db: Database, row: SourceRow, route: str, ip: str | None, *, used_refresh: str | None = None
) -> TokenPair:
    moment = clock.utcnow()
    refresh = new_api_token()
    async with db.write() as conn:
        if used_refresh is not None and not await store.take_refresh_token(
            conn, token_hash=hash_api_token(used_refresh), source_id=row.id, now=clock.now()
        ):
            raise Unauthorized("The refreshToken is unknown, used or expired.")
        access = await _issue(conn, row, moment, LEGACY_TOKEN_SECONDS, route, ip)
        await store.insert_token(
            conn,
            token_hash=hash_api_token(refresh),
            source_id=row.id,
            kind=store.REFRESH,
            now=clock.format(moment),
            expires_at=clock.after(REFRESH_TOKEN_SECONDS, moment),
        )
    return TokenPair(
        access_token=access,
        expires=_legacy_expiry(LEGACY_TOKEN_SECONDS, moment),
        refresh_token=refresh,
    )


def _live_secrets(row: SourceRow, box: SecretBox) -> list[str]:
    """The secrets that open this source now: the current one, and the one it replaced
    while its grace period lasts."""
    live = []
    if row.secret_sealed is not None:
        live.append(box.decrypt(row.secret_sealed, _secret_context(row.id)))
    if _previous_is_live(row):
        assert row.previous_secret_sealed is not None
        live.append(box.decrypt(row.previous_secret_sealed, _secret_context(row.id)))
    return live


def _previous_is_live(row: SourceRow) -> bool:
    return (
        row.previous_secret_hash is not None
        and row.previous_secret_expires_at is not None
        and row.previous_secret_expires_at > clock.now()
    )


def _secret_matches(row: SourceRow, secret: str) -> bool:
    given = hash_api_token(secret)
    current = row.secret_hash is not None and hmac.compare_digest(given, row.secret_hash)
    previous = _previous_is_live(row) and hmac.compare_digest(given, row.previous_secret_hash or "")
    return current or previous


async def _legacy_source(db: Database, api_key: str) -> SourceRow | None:
    key = canonical_id(api_key)
    if key is None:
        return None
    async with db.read() as conn:
        row = await store.source_by_id(conn, key)
    return row if row is not None and not row.is_oauth_key else None


async def authenticate(
    rt: Runtime, *, api_key: str, secret: str, request_ip: str | None
) -> TokenPair:
    """Redox's legacy /auth/authenticate: an API key and its secret buy a 24-hour token."""
    row = await _legacy_source(rt.db, api_key)
    if row is None or not _secret_matches(row, secret):
        raise Unauthorized("The apiKey or secret is wrong.")
    return await _issue_pair(rt.db, row, "/auth/authenticate", request_ip)


async def refresh(
    rt: Runtime, *, api_key: str, refresh_token: str, request_ip: str | None
) -> TokenPair:
    """Redox's legacy /auth/refreshToken: a refresh token buys a new pair, once."""
    row = await _legacy_source(rt.db, api_key)
    if row is None:
        raise Unauthorized("The refreshToken is unknown, used or expired.")
    return await _issue_pair(
        rt.db, row, "/auth/refreshToken", request_ip, used_refresh=refresh_token
    )


async def _jwk(rt: Runtime, row: SourceRow, kid: str) -> dict[str, Any] | None:
    if row.jwk_set is not None:
        return next((k for k in row.jwk_set["keys"] if k["kid"] == kid), None)
    assert row.jwks_url is not None
    try:
        return await rt.jwks.key(
            rt.outbound,
            row.jwks_url,
            kid,
            validate=check_jwks,
            timeout_seconds=rt.settings.verify_timeout_seconds,
        )
    except JwksUnavailable as exc:
        raise refuse(f"{KEY_NOT_FOUND} ({exc})") from None


async def exchange_assertion(
    rt: Runtime, assertion: str, *, audience: str, route: TokenRoute, request_ip: str | None
) -> IssuedToken | None:
    """A five-minute send-API token for a client assertion signed by a source's key; None
    when the assertion's client id is not a source that may use `route` (on
    /v2/auth/token, a source with an OAuth API key; on /oauth/token, any source).

    On /oauth/token (Redox's Source Auth v2) public keys sign RS384 or ES384, and a
    legacy-key source signs HS384 with its secret (no kid needed)."""
    source_auth_v2 = route == "/oauth/token"
    claimed = read_assertion(
        assertion, kid_optional_for=frozenset({SECRET_ALGORITHM}) if source_auth_v2 else frozenset()
    )
    async with rt.db.read() as conn:
        row = await store.source_by_id(conn, claimed.client_id)
    if row is None or not (row.is_oauth_key or source_auth_v2):
        return None
    moment = clock.utcnow()
    if row.is_oauth_key:
        if claimed.kid is None:
            raise request_error("JWT header kid property is required")
        # Fetched before any transaction opens: a slow key server must not hold the database.
        jwk = await _jwk(rt, row, claimed.kid)
        if jwk is None:
            raise refuse(KEY_NOT_FOUND)
        algorithms = allowed_algorithms(jwk)
        if source_auth_v2:
            algorithms &= SOURCE_AUTH_V2_KEY_ALGORITHMS
        claims = verify_assertion(claimed, public_key(jwk), algorithms, audience, moment)
    else:
        claims = _verify_with_secret(rt, row, claimed, audience, moment)
    async with rt.db.write() as conn:
        await remember_jti(conn, row.id, claims["jti"], moment)
        token = await _issue(conn, row, moment, OAUTH_TOKEN_SECONDS, route, request_ip)
    return IssuedToken(token, OAUTH_TOKEN_SECONDS)


def _verify_with_secret(
    rt: Runtime, row: SourceRow, claimed: Any, audience: str, moment: Any
) -> dict[str, Any]:
    refusal: TokenError = refuse(KEY_NOT_FOUND)
    for secret in _live_secrets(row, rt.secret_box):
        try:
            return verify_assertion(claimed, secret, {SECRET_ALGORITHM}, audience, moment)
        except TokenError as exc:
            refusal = exc
    raise refusal


def not_a_source() -> TokenError:
    return refuse(KEY_NOT_FOUND)
