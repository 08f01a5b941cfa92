"""Destination rules: who may do what, what is valid, and what changes together."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from waypost.audit import service as audit
from waypost.audit.service import audited_write, record_failure
from waypost.auth.permissions import Action, OrgRole, require_environment_role, require_org_role
from waypost.auth.principals import Principal
from waypost.credentials import service as credentials
from waypost.crypto import SecretBox
from waypost.db import Connection, Prepared, canonical_id, is_unique_violation, new_id, now
from waypost.destinations.schemas import DestinationCreate, DestinationUpdate, VerifyRequest
from waypost.destinations.tables import destinations
from waypost.destinations.verification import handshake
from waypost.fields import https_refusal
from waypost.http import Conflict, Forbidden, Invalid
from waypost.organizations.service import (
    EnvironmentFlag,
    caller_params,
    caller_role,
    environment_access,
)
from waypost.organizations.tables import environments
from waypost.runtime import Runtime

MAX_PAGE = 1000
MAX_SEQ = 2**31 - 1  # the integer column's range on PostgreSQL
# An unproven receiver: after creation, and whenever its address or token changes.
NOT_VERIFIED = {
    "verified": False,
    "verification_status": None,
    "verification_checked_at": None,
    "verification_error": None,
}
_WHAT = "destination"


# Statements are built once: SQLAlchemy then reuses their compiled form.
_destination_by_id = (
    sa.select(destinations, environments.c.flag, caller_role)
    .join(environments, environments.c.id == destinations.c.environment_id)
    .where(
        destinations.c.id == sa.bindparam("destination_id"),
        environments.c.organization_id == sa.bindparam("organization_id"),
    )
)
_read_access = Prepared(_destination_by_id)
_write_access = Prepared(_destination_by_id.with_for_update(of=destinations))
_insert = Prepared(destinations.insert())
_page = (
    sa.select(destinations)
    .where(
        destinations.c.environment_id == sa.bindparam("environment_id"),
        destinations.c.seq > sa.bindparam("after"),
    )
    .order_by(destinations.c.seq)
    .limit(sa.bindparam("limit"))
)
# The SET clause comes from the parameters given, so one statement serves every update.
_update_by_seq = destinations.update().where(destinations.c.seq == sa.bindparam("row_seq"))
_record_verification = destinations.update().where(
    destinations.c.seq == sa.bindparam("row_seq"),
    destinations.c.endpoint == sa.bindparam("checked_endpoint"),
    destinations.c.verification_token == sa.bindparam("checked_token"),
)
_delete_by_seq = destinations.delete().where(destinations.c.seq == sa.bindparam("row_seq"))


async def _destination_access(
    conn: Connection, principal: Principal, destination_id: str, action: Action
) -> Any:
    query = _write_access if action is Action.WRITE else _read_access
    params = {**caller_params(principal), "destination_id": canonical_id(destination_id)}
    row = await conn.first(query, params) if params["destination_id"] else None
    require_environment_role(row["role"] if row else None, action, what=_WHAT)
    return row


def view(row: Mapping[Any, Any], flag: str) -> dict[str, Any]:
    """The destination as the API shows it; the verification token stays inside."""
    return {
        "id": row["id"],
        "name": row["name"],
        "authCredential": row["auth_credential_id"],
        "endpoint": row["endpoint"],
        "environment": {"id": row["environment_id"], "environmentFlag": flag},
        "cloudProviderSettings": row["cloud_provider_settings"],
        "setupState": row["setup_state"],
        "verified": bool(row["verified"]),
        "verification": _verification_view(row),
        "verificationMethod": row["verification_method"],
        "hasVerificationToken": row["verification_token"] is not None,
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def _verification_view(row: Mapping[Any, Any]) -> dict[str, Any] | None:
    status = row["verification_status"]
    if status is None:
        return None
    shown = {
        "status": status,
        "checkedAt": row["verification_checked_at"],
        "method": row["verification_method"],
    }
    if status == "failed":
        shown["error"] = row["verification_error"]
    return shown


def _check_endpoint_scheme(endpoint: str | None, flag: str) -> None:
    if (refusal := https_refusal(endpoint, flag)) is not None:
        raise Invalid("endpoint", refusal)


async def _check_auth_credential(
    conn: Connection, environment_id: str, credential_id: UUID | None
) -> str | None:
    """The credential to attach (or None to detach): one of the same environment."""
    if credential_id is None:
        return None
    if not await credentials.in_environment(conn, str(credential_id), environment_id):
        raise Invalid("authCredential", "no auth credential with this id in this environment")
    return str(credential_id)


def token_context(destination_id: str) -> str:
    return f"destination:{destination_id}:verificationToken"


def _seal_token(rt: Runtime, destination_id: str, token: str | None) -> str | None:
    if token is None:
        return None
    return rt.secret_box.encrypt(token, token_context(destination_id))


async def create(
    rt: Runtime,
    principal: Principal,
    environment_id: str,
    body: DestinationCreate,
) -> dict[str, Any]:
    if body.endpoint is not None and body.cloud_provider_settings is not None:
        raise Invalid(
            "cloudProviderSettings",
            "a destination is either a URL (endpoint) or cloud storage, not both",
        )
    destination_id = str(body.id) if body.id else new_id()
    created = now()
    async with audited_write(rt.db, principal, "destination-created") as (conn, event):
        environment = await environment_access(
            conn, principal, environment_id, Action.WRITE, what=_WHAT
        )
        flag = environment["flag"]
        if body.environment is not None:
            given_id = body.environment.id
            if given_id is not None and canonical_id(given_id) != environment["id"]:
                raise Invalid("environment.id", "must equal the environment id in the path")
            flag_given = body.environment.environment_flag
            if flag_given is not None and flag_given != flag:
                raise Invalid("environment.environmentFlag", f"this environment is {flag}")
        _check_endpoint_scheme(body.endpoint, flag)
        auth_credential_id = await _check_auth_credential(
            conn, environment["id"], body.auth_credential
        )
        values = {
            "id": destination_id,
            "environment_id": environment["id"],
            "name": body.name,
            "endpoint": body.endpoint,
            "cloud_provider_settings": body.cloud_provider_settings.model_dump(
                by_alias=True, exclude_none=True
            )
            if body.cloud_provider_settings
            else None,
            "setup_state": body.setup_state.model_dump(by_alias=True, exclude_unset=True)
            if body.setup_state
            else None,
            "auth_credential_id": auth_credential_id,
            "verification_token": _seal_token(rt, destination_id, body.verification_token),
            "verification_method": None,
            **NOT_VERIFIED,
            "created_at": created,
            "updated_at": created,
        }
        try:
            await conn.run(_insert, values)
        except sa.exc.IntegrityError as exc:
            if is_unique_violation(exc):
                raise Conflict(f"A destination with id {destination_id} already exists.") from exc
            raise
        event.details = {
            "destinationId": destination_id,
            "environmentId": environment["id"],
            "fields": _audited_fields({}, {k: v for k, v in values.items() if v is not None}),
        }
    return view(values, flag)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        seq = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        seq = -1
    if not 0 <= seq <= MAX_SEQ:
        raise Invalid("_cursor", "is not a cursor this API handed out")
    return seq


async def list_page(
    rt: Runtime,
    principal: Principal,
    environment_id: str,
    count: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page in creation order, and the cursor of the next page if there is one."""
    after = decode_cursor(cursor) if cursor is not None else 0
    async with rt.db.read() as conn:
        environment = await environment_access(
            conn, principal, environment_id, Action.READ, what=_WHAT
        )
        rows = (
            await conn.execute(
                _page, {"environment_id": environment["id"], "after": after, "limit": count + 1}
            )
        ).all()
    page = rows[:count]
    next_cursor = _encode_cursor(page[-1].seq) if len(rows) > count else None
    return [view(r._mapping, environment["flag"]) for r in page], next_cursor


async def get(rt: Runtime, principal: Principal, destination_id: str) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await _destination_access(conn, principal, destination_id, Action.READ)
    return view(row, row["flag"])


async def _changes(
    rt: Runtime, conn: Connection, row: Any, given: Mapping[str, Any]
) -> dict[str, Any]:
    """Column changes for the fields a PATCH or verify call gave (snake_case keys)."""
    changes: dict[str, Any] = {}
    if "name" in given:
        if given["name"] is None:
            raise Invalid("name", "must not be null")
        changes["name"] = given["name"]
    if "auth_credential" in given:
        changes["auth_credential_id"] = await _check_auth_credential(
            conn, row["environment_id"], given["auth_credential"]
        )
    if "endpoint" in given:
        if row["cloud_provider_settings"] is not None:
            raise Invalid(
                "endpoint", "this is a cloud destination; its type cannot change to a URL"
            )
        _check_endpoint_scheme(given["endpoint"], row["flag"])
        changes["endpoint"] = given["endpoint"]
    if "verification_token" in given:
        changes["verification_token"] = _seal_token(rt, row["id"], given["verification_token"])
    if "verification_method" in given:
        changes["verification_method"] = given["verification_method"]
    # A new address or secret has not been proven: the receiver must be verified again.
    if changes.keys() & {"endpoint", "verification_token"}:
        changes.update(NOT_VERIFIED)
    return changes


async def _save(conn: Connection, row: Any, changes: dict[str, Any]) -> Mapping[str, Any]:
    """Writes the changes and returns the row as it now stands."""
    if changes:
        changes["updated_at"] = now()
        await conn.execute(_update_by_seq, {"row_seq": row["seq"], **changes})
    return {**row, **changes}


# Column -> wire name, for the audit trail; the verification token is a secret.
_AUDITED = {
    "name": "name",
    "endpoint": "endpoint",
    "auth_credential_id": "authCredential",
    "verification_token": "verificationToken",
    "verification_method": "verificationMethod",
    "cloud_provider_settings": "cloudProviderSettings",
    "setup_state": "setupState",
}


def _audited_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    wire_old = {_AUDITED[k]: v for k, v in old.items() if k in _AUDITED}
    wire_new = {_AUDITED[k]: v for k, v in new.items() if k in _AUDITED}
    return audit.changes(wire_old, wire_new, secrets=frozenset({"verificationToken"}))


def _given(body: DestinationUpdate | VerifyRequest) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.model_fields_set}


async def update(
    rt: Runtime,
    principal: Principal,
    destination_id: str,
    body: DestinationUpdate,
) -> dict[str, Any]:
    async with audited_write(rt.db, principal, "destination-updated") as (conn, event):
        event.details["destinationId"] = destination_id
        row = await _destination_access(conn, principal, destination_id, Action.WRITE)
        changes = await _changes(rt, conn, row, _given(body))
        event.details["changes"] = _audited_fields(row, changes)
        saved = await _save(conn, row, changes)
    return view(saved, row["flag"])


async def verify(
    rt: Runtime,
    principal: Principal,
    destination_id: str,
    body: VerifyRequest,
) -> dict[str, Any]:
    """Saves the given fields, runs the challenge handshake, and records the outcome.

    The handshake runs outside any transaction: a slow receiver must not hold the
    database. The outcome is recorded only if endpoint and token are still the ones
    that were checked.
    """
    # Every verify call leaves a trace, refused or not: a 403, a body that breaks a rule,
    # a cloud destination, and (below) missing fields and failed handshakes.
    verify_event = audited_write(
        rt.db,
        principal,
        "destination-verified",
        record_success=False,
        refusals=(Forbidden, Invalid),
    )
    async with verify_event as (conn, event):
        event.details["destinationId"] = destination_id
        row = await _destination_access(conn, principal, destination_id, Action.WRITE)
        if row["cloud_provider_settings"] is not None:
            raise Invalid(
                "cloudProviderSettings",
                "cloud destinations are verified by cloud delivery, which is not available yet",
            )
        changes = await _changes(rt, conn, row, _given(body))
        event.details["changes"] = _audited_fields(row, changes)
        saved = await _save(conn, row, changes)
    missing = [
        (field, "is required to verify; set it on the destination or in this request")
        for field, column in (("endpoint", "endpoint"), ("verificationToken", "verification_token"))
        if saved[column] is None
    ]
    if missing:
        refusal = Invalid.many(missing)
        await record_failure(rt.db, principal, event, refusal.detail)
        raise refusal
    method = saved["verification_method"] or "POST"
    token = rt.secret_box.decrypt(saved["verification_token"], token_context(saved["id"]))
    outcome = await handshake(
        rt.outbound,
        saved["endpoint"],
        token,
        method,
        timeout_seconds=rt.settings.verify_timeout_seconds,
    )
    result = {
        "verified": outcome.error is None,
        "verification_status": "failed" if outcome.error else "verified",
        "verification_checked_at": now(),
        "verification_error": outcome.error.message if outcome.error else None,
        "verification_method": method,
    }
    event.details.update(method=method, endpoint=saved["endpoint"])
    if outcome.error is not None:
        event.status = "failed"
        event.details["error"] = outcome.error.message
    async with rt.db.write() as conn:
        recorded = await conn.execute(
            _record_verification,
            {
                "row_seq": row["seq"],
                "checked_endpoint": saved["endpoint"],
                "checked_token": saved["verification_token"],
                **result,
            },
        )
        if recorded.rowcount:
            await audit.record(conn, audit.Actor.of(principal), event)
    if recorded.rowcount == 0:
        raise Conflict("The destination changed while it was being verified; verify again.")
    if outcome.error is not None:
        raise Invalid(outcome.error.field, outcome.error.message)
    return view({**saved, **result}, row["flag"])


_using_credential = (
    sa.select(destinations.c.id, destinations.c.name)
    .where(
        destinations.c.environment_id == sa.bindparam("environment_id"),
        destinations.c.auth_credential_id == sa.bindparam("credential_id"),
    )
    .order_by(destinations.c.seq)
)
_sealed_tokens = (
    sa.select(destinations.c.seq, destinations.c.id, destinations.c.verification_token)
    .where(destinations.c.verification_token.is_not(None))
    .with_for_update()
)


async def using_credential(
    conn: Connection, environment_id: str, credential_id: str
) -> list[tuple[str, str]]:
    """(id, name) of the destinations that send with this auth credential."""
    params = {"environment_id": environment_id, "credential_id": credential_id}
    return [(r.id, r.name) for r in (await conn.execute(_using_credential, params)).all()]


async def reseal_tokens(conn: Connection, box: SecretBox) -> int:
    """Moves every verification token onto the first key; returns how many moved."""
    count = 0
    for row in (await conn.execute(_sealed_tokens)).all():
        if box.is_current(row.verification_token):
            continue
        sealed = box.reseal(
            row.verification_token,
            token_context(row.id),
            what=f"the verificationToken of destination {row.id}",
        )
        await conn.execute(_update_by_seq, {"row_seq": row.seq, "verification_token": sealed})
        count += 1
    return count


async def delete(rt: Runtime, principal: Principal, destination_id: str) -> str:
    async with audited_write(rt.db, principal, "destination-deleted") as (conn, event):
        event.details["destinationId"] = destination_id
        row = await _destination_access(conn, principal, destination_id, Action.WRITE)
        event.details["name"] = row["name"]
        if row["flag"] == EnvironmentFlag.PRODUCTION:
            require_org_role(
                principal.org_role,
                {OrgRole.OWNER, OrgRole.ADMIN},
                doing="Deleting a Production destination",
            )
        await conn.execute(_delete_by_seq, {"row_seq": row["seq"]})
    return f"Destination {destination_id} was deleted and no longer exists in its environment."
