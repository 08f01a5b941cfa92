"""Credentials that let a caller in: API tokens (issued once, stored as hashes,
revocable), registered public keys, and Redox's JWT exchange for five-minute tokens."""

from __future__ import annotations

from dataclasses import dataclass
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
from waypost.auth.store import KeySet, NewToken
from waypost.crypto import hash_api_token, new_api_token
from waypost.db import Connection, Database, new_id
from waypost.http import NotFound
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


def _cli(organization_id: int, command: str) -> Actor:
    return Actor(organization_id, route=f"cli: waypost {command}")


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
    """`access.Authenticate`: the user behind a live API token."""
    async with db.read() as conn:
        return await store.live_token_identity(
            conn, token_hash=hash_api_token(token), now=clock.now()
        )


async def issue_token(
    conn: Connection, *, user_id: str, expires_at: str | None = None, client_id: str | None = None
) -> IssuedToken:
    """Inside the caller's write. The token itself is never stored."""
    token = new_api_token()
    issued = IssuedToken(new_id(), token)
    await store.insert_token(
        conn,
        NewToken(issued.id, user_id, hash_api_token(token), clock.now(), expires_at, client_id),
    )
    return issued


async def enroll_organization(db: Database, *, name: str, owner_email: str) -> EnrolledOrganization:
    """An organization with its environments and owner, and the owner's first token."""
    async with db.write() as conn:
        created = await organizations.create_organization(conn, name=name, owner_email=owner_email)
        token = await issue_token(conn, user_id=created.owner.id)
    return EnrolledOrganization(created, token)


async def enroll_user(
    db: Database,
    *,
    organization_id: int,
    email: str,
    org_role: OrgRole,
    env_roles: dict[str, EnvRole],
) -> EnrolledUser:
    """A user of an organization with roles, and their first token."""
    async with db.write() as conn:
        created = await organizations.create_user(
            conn,
            organization_id=organization_id,
            email=email,
            org_role=org_role,
            env_roles=env_roles,
        )
        token = await issue_token(conn, user_id=created.user.id)
    return EnrolledUser(created, token)


async def create_token(db: Database, *, user_id: str) -> IssuedToken:
    async with db.write() as conn:
        user = await organizations.member(conn, user_id=user_id)
        issued = await issue_token(conn, user_id=user.id)
        await record(
            conn,
            _cli(user.organization_id, "tokens create"),
            Event("api-token-created", {"userId": user.id, "tokenId": issued.id}),
        )
        return issued


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
