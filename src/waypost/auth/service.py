"""Credentials that let a caller in: API tokens (issued once, stored as hashes,
revocable), registered public keys, and Redox's JWT exchange for five-minute tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from waypost import clock
from waypost.access import Identity
from waypost.audit.service import Actor, Event, record
from waypost.auth import store

# The client-assertion checks live in one place, shared with sources; these names stay
# importable from here.
from waypost.auth.assertions import (
    CLIENT_ASSERTION_TYPE,
    KEY_NOT_FOUND,
    InvalidKeys,
    TokenError,
    allowed_algorithms,
    check_jwks,
    check_token_request,
    public_key,
    read_assertion,
    refuse,
    remember_jti,
    verify_assertion,
)
from waypost.auth.store import KeySet, LiveToken, NewToken, TokenRow
from waypost.crypto import hash_api_token, new_api_token
from waypost.db import Connection, Database, new_id
from waypost.http import Invalid, NotFound
from waypost.kinds import EnvRole, OrgRole
from waypost.organizations import service as organizations
from waypost.organizations.service import NewOrganization, NewUser

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "InvalidKeys",
    "TokenError",
    "check_jwks",
    "check_token_request",
]

PLATFORM_TOKEN_SECONDS = 300  # Redox's access tokens last five minutes
LAST_USED_PRECISION = timedelta(minutes=1)  # how often a token's last use is written


def _cli(organization_id: int, command: str) -> Actor:
    return Actor.command_line(organization_id, command)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    token: str  # shown once; only its hash is stored


@dataclass(frozen=True, slots=True)
class EnrolledOrganization:
    organization: NewOrganization
    token: IssuedToken  # the owner's


@dataclass(frozen=True, slots=True)
class EnrolledUser:
    user: NewUser
    token: IssuedToken


async def authenticate(db: Database, token: str) -> Identity | None:
    """`access.Authenticate`: the user behind a live API token. Notes the token's use for
    `waypost tokens list`, at most once a minute, so a busy token costs no write per
    request."""
    moment = clock.utcnow()
    async with db.read() as conn:
        found = await live_token(conn, token, moment)
    if found is None:
        return None
    stale_before = stale_use(found, moment)
    if stale_before is not None:
        async with db.write() as conn:
            await note_use(conn, found, moment, stale_before)
    return found.identity


async def live_token(conn: Connection, token: str, moment: datetime) -> LiveToken | None:
    return await store.live_token(conn, token_hash=hash_api_token(token), now=clock.format(moment))


def stale_use(found: LiveToken, moment: datetime) -> str | None:
    """When the token's last use, as stored, is older than its precision: the time before
    which it counts as stale (for `note_use`); else None, and nothing is written."""
    stale_before = clock.format(moment - LAST_USED_PRECISION)
    if found.last_used_at is None or found.last_used_at < stale_before:
        return stale_before
    return None


async def note_use(conn: Connection, found: LiveToken, moment: datetime, stale_before: str) -> None:
    """Inside the caller's write: the token's last use is now."""
    await store.touch_token(
        conn, token_id=found.token_id, now=clock.format(moment), stale_before=stale_before
    )


async def issue_token(
    conn: Connection,
    *,
    user_id: str,
    expires_at: str | None = None,
    client_id: str | None = None,
    name: str | None = None,
) -> IssuedToken:
    """Inside the caller's write. The token itself is never stored."""
    token = new_api_token()
    issued = IssuedToken(new_id(), token)
    await store.insert_token(
        conn,
        NewToken(
            issued.id,
            user_id,
            hash_api_token(token),
            clock.now(),
            expires_at,
            client_id,
            None if name is None else clean_token_name(name),
        ),
    )
    return issued


def clean_token_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 255 or not name.isprintable():
        raise Invalid("name", "a token name is 1 to 255 printable characters on one line")
    return name


async def enroll_organization(
    db: Database, *, name: str, owner_email: str, command: str | None = None
) -> EnrolledOrganization:
    """An organization with its environments and owner, and the owner's first token.

    `command` is the `waypost` command that asked (`orgs create`, `bootstrap`): the
    token is named after it, and the organization's audit trail records all three in the
    same transaction. Without it (the test suite's fixtures) the trail starts empty."""
    async with db.write() as conn:
        created = await organizations.create_organization(conn, name=name, owner_email=owner_email)
        owner = created.owner
        token = await issue_token(
            conn, user_id=owner.id, name=None if command is None else f"waypost {command}"
        )
        if command is not None:
            actor = _cli(created.id, command)
            environments = [
                {"id": e.id, "name": e.name, "environmentFlag": e.flag.value}
                for e in created.environments
            ]
            await record(
                conn,
                actor,
                Event("organization-created", {"name": created.name, "environments": environments}),
            )
            roles = {e.id: EnvRole.ENGINEER.value for e in created.environments}
            await record(conn, actor, _user_created(owner.id, owner.email, owner.org_role, roles))
            await record(conn, actor, _token_created(owner.id, token))
    return EnrolledOrganization(created, token)


def _user_created(user_id: str, email: str, org_role: OrgRole, env_roles: dict[str, str]) -> Event:
    details = {"userId": user_id, "email": email, "orgRole": org_role.value}
    return Event("user-created", {**details, "environmentRoles": env_roles})


def _token_created(user_id: str, token: IssuedToken) -> Event:
    return Event("api-token-created", {"userId": user_id, "tokenId": token.id})


async def enroll_user(
    db: Database,
    *,
    organization_id: int,
    email: str,
    org_role: OrgRole,
    env_roles: dict[str, EnvRole],
    command: str | None = None,
) -> EnrolledUser:
    """A user of an organization with roles, and their first token; `command` as for
    `enroll_organization`."""
    async with db.write() as conn:
        created = await organizations.create_user(
            conn,
            organization_id=organization_id,
            email=email,
            org_role=org_role,
            env_roles=env_roles,
        )
        user = created.user
        token = await issue_token(
            conn, user_id=user.id, name=None if command is None else f"waypost {command}"
        )
        if command is not None:
            actor = _cli(organization_id, command)
            roles = {env: role.value for env, role in created.environment_roles.items()}
            await record(conn, actor, _user_created(user.id, user.email, user.org_role, roles))
            await record(conn, actor, _token_created(user.id, token))
    return EnrolledUser(created, token)


async def create_token(db: Database, *, user_id: str, name: str | None = None) -> IssuedToken:
    async with db.write() as conn:
        user = await organizations.member(conn, user_id=user_id)
        issued = await issue_token(conn, user_id=user.id, name=name)
        await record(
            conn, _cli(user.organization_id, "tokens create"), _token_created(user.id, issued)
        )
        return issued


async def list_tokens(db: Database, *, user_id: str, ended: bool = False) -> list[TokenRow]:
    """A user's tokens, oldest first: the live ones, and with `ended` the revoked and
    expired ones too. Never a token itself (only its hash is stored anyway)."""
    now = clock.now()
    async with db.read() as conn:
        user = await organizations.member(conn, user_id=user_id)
        found = await store.tokens_of(conn, user_id=user.id)
    if ended:
        return found
    return [
        t for t in found if t.revoked_at is None and (t.expires_at is None or t.expires_at > now)
    ]


async def revoke_token(db: Database, *, token_id: str) -> None:
    async with db.write() as conn:
        user_id = await store.revoke_token(conn, token_id=token_id, at=clock.now())
        if user_id is None:
            raise NotFound(f"no active token with id {token_id}")
        user = await organizations.member(conn, user_id=user_id)
        await record(
            conn,
            _cli(user.organization_id, "tokens revoke"),
            Event("api-token-revoked", {"userId": user_id, "tokenId": token_id}),
        )


async def register_keys(db: Database, *, user_id: str, keys: list[dict[str, Any]]) -> str:
    """Registers a public key set for a user; returns its client id."""
    client_id = new_id()
    async with db.write() as conn:
        user = await organizations.member(conn, user_id=user_id)
        await store.insert_key_set(
            conn, client_id=client_id, user_id=user.id, created_at=clock.now(), keys=keys
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


async def list_keys(db: Database, *, user_id: str) -> list[KeySet]:
    async with db.read() as conn:
        user = await organizations.member(conn, user_id=user_id)
        return await store.key_sets(conn, user_id=user.id)


async def revoke_keys(db: Database, *, client_id: str) -> None:
    """Revokes a key set and the platform tokens it issued that are still live."""
    async with db.write() as conn:
        user_id = await store.revoke_key_set(conn, client_id=client_id, at=clock.now())
        if user_id is None:
            raise NotFound(f"no active key set with client id {client_id}")
        user = await organizations.member(conn, user_id=user_id)
        await record(
            conn,
            _cli(user.organization_id, "keys revoke"),
            Event("api-key-revoked", {"userId": user_id, "clientId": client_id}),
        )


async def exchange_assertion(
    db: Database, assertion: str, audience: str, request_ip: str | None
) -> str:
    """Verifies a client assertion (a JWT signed by a registered key) and issues a
    five-minute bearer token for the key's user."""
    claimed = read_assertion(assertion)
    client_id, kid = claimed.client_id, claimed.kid
    async with db.read() as conn:
        key = (
            None if kid is None else await store.registered_key(conn, client_id=client_id, kid=kid)
        )
        user = None if key is None else await organizations.identity(conn, user_id=key.user_id)
    if key is None or user is None:
        raise refuse(KEY_NOT_FOUND)
    moment = clock.utcnow()
    allowed = allowed_algorithms(key.jwk)
    claims = verify_assertion(claimed, public_key(key.jwk), allowed, audience, moment)
    expires_at = clock.after(PLATFORM_TOKEN_SECONDS, moment)
    async with db.write() as conn:
        await remember_jti(conn, client_id, claims["jti"], moment)
        issued = await issue_token(
            conn, user_id=user.user_id, expires_at=expires_at, client_id=client_id
        )
        await record(
            conn,
            Actor(user.organization_id, user.user_id, request_ip, "POST /v2/auth/token"),
            Event(
                "platform-token-issued",
                {"clientId": client_id, "kid": kid, "tokenId": issued.id, "expiresAt": expires_at},
            ),
        )
    return issued.token
