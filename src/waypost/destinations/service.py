"""Destination rules: who may do what, what is valid, and what changes together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from pydantic import JsonValue

from waypost import clock
from waypost.access import Action, Caller, Principal, require_environment_role, require_org_role
from waypost.audit import service as audit
from waypost.audit.service import Event, audited_write, record_failure
from waypost.auth import callers
from waypost.auth.callers import Lookup
from waypost.crypto import SecretBox, SecretKeyError
from waypost.db import (
    Connection,
    canonical_id,
    is_foreign_key_violation,
    is_unique_violation,
    new_id,
)
from waypost.destinations import delivery_settings, store
from waypost.destinations.collaborators import collaborators
from waypost.destinations.delivery_settings import DeliverySettings
from waypost.destinations.schemas import (
    CloudProviderSettings,
    CloudProviderSettingsPatch,
    DeliveryIn,
    DestinationCreate,
    DestinationOut,
    DestinationUpdate,
    VerifyRequest,
)
from waypost.destinations.store import DestinationRow, Located
from waypost.destinations.target import DeliveryTarget
from waypost.destinations.verification import Outcome, handshake, probe_cloud
from waypost.fields import https_refusal
from waypost.http import Conflict, Forbidden, Invalid, NotFound, decode_cursor, encode_cursor
from waypost.kinds import EnvironmentFlag, OrgRole
from waypost.logs import service as logs
from waypost.organizations.service import environment_access
from waypost.queue import service as queue
from waypost.runtime import Runtime

MAX_PAGE = 1000
MAX_SEQ = 2**31 - 1  # the integer column's range on PostgreSQL
# An unproven receiver: after creation, and whenever its address or token changes.
NOT_VERIFIED: dict[str, Any] = {
    "verified": False,
    "verification_status": None,
    "verification_checked_at": None,
    "verification_error": None,
}
_WHAT = "destination"
_NO_CREDENTIAL = "no auth credential with this id in this environment"


async def _access(
    conn: Connection, principal: Principal, destination_id: str, action: Action
) -> Located:
    key = canonical_id(destination_id)
    found = None
    if key is not None:
        found = await store.locate(
            conn,
            destination_id=key,
            organization_id=principal.organization_id,
            user_id=principal.user_id,
            for_update=action is Action.WRITE,
        )
    require_environment_role(found.role if found else None, action, what=_WHAT)
    assert found is not None  # require_environment_role refuses a missing role
    return found


def _check_endpoint_scheme(endpoint: str | None, flag: str) -> None:
    if (refusal := https_refusal(endpoint, flag)) is not None:
        raise Invalid("endpoint", refusal)


def _stored_delivery(
    stored: Mapping[str, JsonValue] | None, given: DeliveryIn | None, *, cloud: bool
) -> dict[str, JsonValue] | None:
    """The delivery keys to store after applying `given`; checks the effective settings."""
    kept = delivery_settings.merged(
        stored, None if given is None else given.model_dump(by_alias=True, exclude_unset=True)
    )
    delivery_settings.effective(kept, cloud=cloud)
    return kept


def token_context(destination_id: str) -> str:
    return f"destination:{destination_id}:verificationToken"


def _seal_token(rt: Runtime, destination_id: str, token: str | None) -> str | None:
    if token is None:
        return None
    return rt.secret_box.encrypt(token, token_context(destination_id))


def _open_token(box: SecretBox, row: DestinationRow) -> str | None:
    """The verification token in plain text. Raises SecretKeyError, as every secret at
    rest does, when no configured key opens it."""
    if row.verification_token is None:
        return None
    try:
        return box.decrypt(row.verification_token, token_context(row.id))
    except (InvalidTag, SecretKeyError):
        raise SecretKeyError(
            f"the verificationToken of destination {row.id} cannot be opened with the "
            "configured WAYPOST_SECRET_KEY; set the verificationToken again"
        ) from None


def _same_token(rt: Runtime, row: DestinationRow, token: str | None) -> bool:
    """Whether `token` is the one stored: sending the same value again changes nothing
    (and leaves a proven receiver verified). A token no key opens counts as different."""
    try:
        return _open_token(rt.secret_box, row) == token
    except SecretKeyError:
        return False


async def create(
    rt: Runtime, *, caller: Caller, environment_id: str, body: DestinationCreate
) -> DestinationOut:
    destination_id = str(body.id) if body.id else new_id()
    created = clock.now()
    async with audited_write(rt.db, caller, "destination-created") as (conn, event):
        # The token's lookup rides on the environment's (auth's `callers`).
        environment = await callers.environment_access(
            conn, Lookup(caller), environment_id, Action.WRITE, what=_WHAT
        )
        if body.endpoint is not None and body.cloud_provider_settings is not None:
            raise Invalid(
                "cloudProviderSettings",
                "a destination is either a URL (endpoint) or cloud storage, not both",
            )
        flag = environment.flag
        if body.environment is not None:
            given_id = body.environment.id
            if given_id is not None and canonical_id(given_id) != environment.id:
                raise Invalid("environment.id", "must equal the environment id in the path")
            flag_given = body.environment.environment_flag
            if flag_given is not None and flag_given != flag:
                raise Invalid("environment.environmentFlag", f"this environment is {flag}")
        _check_endpoint_scheme(body.endpoint, flag)
        cloud = body.cloud_provider_settings is not None
        if body.auth_credential is not None:
            await _check_credential_fits(conn, str(body.auth_credential), cloud=cloud)
        values = {
            "id": destination_id,
            "environment_id": environment.id,
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
            "auth_credential_id": str(body.auth_credential) if body.auth_credential else None,
            "verification_token": _seal_token(rt, destination_id, body.verification_token),
            "verification_method": None,
            **NOT_VERIFIED,
            "delivery": _stored_delivery(None, body.delivery, cloud=cloud),
            "created_at": created,
            "updated_at": created,
        }
        try:
            row = await store.insert(conn, values)
        except sa.exc.IntegrityError as exc:
            if is_foreign_key_violation(exc):
                raise Invalid("authCredential", _NO_CREDENTIAL) from None
            if is_unique_violation(exc):
                raise Conflict(f"A destination with id {destination_id} already exists.") from exc
            raise
        event.details = {
            "destinationId": destination_id,
            "environmentId": environment.id,
            "fields": _audited_fields({}, {k: v for k, v in values.items() if v is not None}),
        }
    return DestinationOut.of(row, flag)


async def list_page(
    rt: Runtime, *, principal: Principal, environment_id: str, count: int, cursor: str | None
) -> tuple[list[DestinationOut], str | None]:
    """One page in creation order, and the cursor of the next page if there is one."""
    after = decode_cursor(cursor, highest=MAX_SEQ) if cursor is not None else 0
    async with rt.db.read() as conn:
        environment = await environment_access(
            conn, principal, environment_id, Action.READ, what=_WHAT
        )
        rows = await store.page(conn, environment_id=environment.id, after=after, limit=count + 1)
    page = rows[:count]
    next_cursor = encode_cursor(page[-1].seq) if len(rows) > count else None
    flag = environment.flag
    return [DestinationOut.of(r, flag) for r in page], next_cursor


async def get(rt: Runtime, *, caller: Caller, destination_id: str) -> DestinationOut:
    """One statement: the token's user, the destination and the caller's role there."""
    lookup = Lookup(caller)
    key = canonical_id(destination_id)
    found, row = None, None
    if key is not None:
        async with rt.db.read() as conn:
            found, row = await store.locate_by_token(conn, lookup, destination_id=key)
    await lookup.settle(rt.db, row)
    require_environment_role(found.role if found else None, Action.READ, what=_WHAT)
    assert found is not None  # require_environment_role refuses a missing role
    return DestinationOut.of(found.row, found.flag)


def _changes(rt: Runtime, found: Located, given: Mapping[str, Any]) -> dict[str, Any]:
    """Column changes for the fields a PATCH or verify call gave (snake_case keys)."""
    row = found.row
    changes: dict[str, Any] = {}
    if "name" in given:
        if given["name"] is None:
            raise Invalid("name", "must not be null")
        changes["name"] = given["name"]
    if "auth_credential" in given:
        credential = given["auth_credential"]
        changes["auth_credential_id"] = None if credential is None else str(credential)
    if "endpoint" in given:
        if row.is_cloud:
            raise Invalid("endpoint", _TYPE_FIXED.format(this="a cloud", other="a URL"))
        _check_endpoint_scheme(given["endpoint"], found.flag)
        if given["endpoint"] != row.endpoint:
            changes["endpoint"] = given["endpoint"]
    if "verification_token" in given and not _same_token(rt, row, given["verification_token"]):
        changes["verification_token"] = _seal_token(rt, row.id, given["verification_token"])
    if "verification_method" in given:
        changes["verification_method"] = given["verification_method"]
    if "cloud_provider_settings" in given:
        cloud = _cloud_settings(row, given["cloud_provider_settings"])
        if cloud != row.cloud_provider_settings:
            changes["cloud_provider_settings"] = cloud
    if "delivery" in given:
        changes["delivery"] = _stored_delivery(row.delivery, given["delivery"], cloud=row.is_cloud)
    # A new address or secret has not been proven: the receiver must be verified again.
    if changes.keys() & {"endpoint", "verification_token"}:
        changes.update(NOT_VERIFIED)
    return changes


_TYPE_FIXED = (
    "this is {this} destination; a destination's type is fixed at creation, so it cannot "
    "become {other} destination (create a new destination instead)"
)


def _cloud_settings(
    row: DestinationRow, given: CloudProviderSettingsPatch | None
) -> dict[str, Any] | None:
    """A cloud destination's settings with the given keys applied (its container, prefix or
    storage account); a URL destination cannot take any."""
    field = "cloudProviderSettings"
    if not row.is_cloud:
        if given is None:
            return None  # a URL destination has none: nothing to clear
        raise Invalid(field, _TYPE_FIXED.format(this="a URL", other="a cloud"))
    if given is None:
        raise Invalid(field, _TYPE_FIXED.format(this="a cloud", other="a URL"))
    stored = dict(row.cloud_provider_settings or {})
    kept = stored.get("settings")
    stored_settings = dict(kept) if isinstance(kept, dict) else {}
    patch = given.model_dump(by_alias=True, exclude_unset=True)
    settings_patch = patch.pop("settings", {})
    required = [(f"{field}.{k}", v) for k, v in patch.items()]
    if settings_patch is None:
        required.append((f"{field}.settings", None))
    else:
        required += [
            (f"{field}.settings.{k}", settings_patch[k])
            for k in ("storageAccountName", "containerName")
            if k in settings_patch
        ]
    for name, value in required:
        if value is None:
            raise Invalid(name, "must not be null")
    for key, value in (settings_patch or {}).items():
        if value is None:
            stored_settings.pop(key, None)
        else:
            stored_settings[key] = value
    merged = {**stored, **patch, "settings": stored_settings}
    # The result must be whole settings, as creation takes them.
    whole = CloudProviderSettings.model_validate(merged)
    return whole.model_dump(by_alias=True, exclude_none=True)


async def _save(conn: Connection, row: DestinationRow, changes: dict[str, Any]) -> DestinationRow:
    """Writes the changes and returns the row as it now stands."""
    if changes:
        changes["updated_at"] = clock.now()
    try:
        saved = await store.update(conn, row, changes)
    except sa.exc.IntegrityError as exc:
        if is_foreign_key_violation(exc):
            raise Invalid("authCredential", _NO_CREDENTIAL) from None
        raise
    if changes.keys() & {"endpoint", "verification_token"}:
        # An unproven receiver gets nothing: the queue waits, whole, for a new verify.
        await queue.set_held(conn, destination_id=row.id, held=True)
    return saved


# Column -> wire name, for the audit trail; the verification token is a secret.
_AUDITED = {
    "name": "name",
    "endpoint": "endpoint",
    "auth_credential_id": "authCredential",
    "verification_token": "verificationToken",
    "verification_method": "verificationMethod",
    "cloud_provider_settings": "cloudProviderSettings",
    "setup_state": "setupState",
    "delivery": "delivery",
}


def _audited_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    wire_old = {_AUDITED[k]: v for k, v in old.items() if k in _AUDITED}
    wire_new = {_AUDITED[k]: v for k, v in new.items() if k in _AUDITED}
    return audit.changes(wire_old, wire_new, secrets=frozenset({"verificationToken"}))


def _columns(row: DestinationRow) -> dict[str, Any]:
    return {column: getattr(row, column) for column in _AUDITED}


def _given(body: DestinationUpdate | VerifyRequest) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.model_fields_set}


async def update(
    rt: Runtime, *, principal: Principal, destination_id: str, body: DestinationUpdate
) -> DestinationOut:
    async with audited_write(rt.db, principal, "destination-updated") as (conn, event):
        event.details["destinationId"] = destination_id
        found = await _access(conn, principal, destination_id, Action.WRITE)
        changes = _changes(rt, found, _given(body))
        if changes.get("auth_credential_id") is not None:
            await _check_credential_fits(
                conn, changes["auth_credential_id"], cloud=found.row.is_cloud
            )
        event.details["changes"] = _audited_fields(_columns(found.row), changes)
        saved = await _save(conn, found.row, changes)
    return DestinationOut.of(saved, found.flag)


async def _check_credential_fits(conn: Connection, credential_id: str, *, cloud: bool) -> None:
    """A credential of the other kind (Azure's on a URL destination, say) is refused now,
    rather than by every attempt to come."""
    refusal = await collaborators().credential_fit(conn, credential_id, cloud)
    if refusal is not None:
        raise Invalid("authCredential", refusal)


async def verify(
    rt: Runtime, *, principal: Principal, destination_id: str, body: VerifyRequest
) -> DestinationOut:
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
        found = await _access(conn, principal, destination_id, Action.WRITE)
        if found.row.is_cloud:
            given = _given(body)
            if given:
                first = VerifyRequest.model_fields[next(iter(given))]
                raise Invalid(
                    first.alias or next(iter(given)),
                    "a cloud destination is verified by writing to its container; "
                    "it has no endpoint, verificationToken or verificationMethod",
                )
            if found.row.auth_credential_id is None:
                raise Invalid(
                    "authCredential",
                    "is required to verify a cloud destination; attach a credential that "
                    "may write to its container",
                )
        changes = _changes(rt, found, _given(body))
        event.details["changes"] = _audited_fields(_columns(found.row), changes)
        saved = await _save(conn, found.row, changes)
    if saved.is_cloud:
        return await _verify_cloud(rt, principal, event, saved, found.flag)
    missing = [
        (field, "is required to verify; set it on the destination or in this request")
        for field, value in (
            ("endpoint", saved.endpoint),
            ("verificationToken", saved.verification_token),
        )
        if value is None
    ]
    if missing:
        refusal = Invalid.many(missing)
        await record_failure(rt.db, principal, event, refusal.detail)
        raise refusal
    assert saved.endpoint is not None
    try:
        token = _open_token(rt.secret_box, saved)
    except SecretKeyError as exc:
        # The key that sealed the token is gone (a wrong or rotated WAYPOST_SECRET_KEY):
        # only a new token helps, so say so rather than fail the request.
        refusal = Invalid("verificationToken", str(exc))
        await record_failure(rt.db, principal, event, refusal.detail)
        raise refusal from None
    assert token is not None
    method = saved.verification_method or "POST"
    outcome = await handshake(
        rt.outbound,
        saved.endpoint,
        token,
        method,
        timeout_seconds=rt.settings.verify_timeout_seconds,
    )
    event.details.update(method=method, endpoint=saved.endpoint)
    return await _record_outcome(rt, principal, event, saved, found.flag, outcome, method=method)


async def _record_outcome(
    rt: Runtime,
    principal: Principal,
    event: Event,
    saved: DestinationRow,
    flag: EnvironmentFlag,
    outcome: Outcome,
    *,
    method: str | None,
) -> DestinationOut:
    result = {
        "verified": outcome.error is None,
        "verification_status": "failed" if outcome.error else "verified",
        "verification_checked_at": clock.now(),
        "verification_error": outcome.error.message if outcome.error else None,
        "verification_method": method,
    }
    if outcome.error is not None:
        event.status = "failed"
        event.details["error"] = outcome.error.message
    async with rt.db.write() as conn:
        recorded = await store.record_verification(conn, saved, result)
        if recorded is not None:
            await audit.record(conn, audit.Actor.of(principal), event)
            if outcome.error is None:
                await queue.set_held(conn, destination_id=saved.id, held=False)
    if recorded is not None and outcome.error is None:
        rt.delivery_wake.set()  # a held queue may go again
    if recorded is None:
        raise Conflict("The destination changed while it was being verified; verify again.")
    if outcome.error is not None:
        raise Invalid(outcome.error.field, outcome.error.message)
    return DestinationOut.of(recorded, flag)


async def _verify_cloud(
    rt: Runtime, principal: Principal, event: Event, row: DestinationRow, flag: EnvironmentFlag
) -> DestinationOut:
    """Writes, reads back and deletes a probe blob, and records how that went."""
    try:
        target = await delivery_target(rt, destination_id=row.id)
    except SecretKeyError as exc:
        refusal = Invalid("authCredential", str(exc))
        await record_failure(rt.db, principal, event, refusal.detail)
        raise refusal from None
    if target is None:
        raise NotFound(f"Destination {row.id} was deleted while it was being verified.")
    outcome = await probe_cloud(rt, target)
    return await _record_outcome(rt, principal, event, row, flag, outcome, method=None)


async def delete(
    rt: Runtime, *, principal: Principal, destination_id: str, force: bool = False
) -> str:
    """Deletes a destination. Messages still queued for it answer 409 with their count,
    unless `force`, which marks them failed ("destination deleted")."""
    async with audited_write(rt.db, principal, "destination-deleted") as (conn, event):
        event.details["destinationId"] = destination_id
        found = await _access(conn, principal, destination_id, Action.WRITE)
        event.details["name"] = found.row.name
        if found.flag == EnvironmentFlag.PRODUCTION:
            require_org_role(
                principal.org_role,
                {OrgRole.OWNER, OrgRole.ADMIN},
                doing="Deleting a Production destination",
            )
        waiting = await queue.pending(conn, destination_id=found.row.id)
        if waiting and not force:
            raise Conflict(
                f"{waiting} message(s) are still queued for destination {found.row.id}; "
                "delete with ?force=true to mark them failed"
            )
        if waiting:
            dropped = await queue.drop(conn, destination_id=found.row.id)
            await logs.fail(conn, log_ids=dropped, reason="destination deleted", at=clock.now())
            event.details["failedMessages"] = len(dropped)
        await store.delete(conn, found.row)
    return f"Destination {destination_id} was deleted and no longer exists in its environment."


# --- for other features ------------------------------------------------------------------


async def delivery_target(rt: Runtime, *, destination_id: str) -> DeliveryTarget | None:
    """The destination as a sender sees it, or None if it no longer exists. Raises
    SecretKeyError when its verification token cannot be opened."""
    async with rt.db.read() as conn:
        found = await store.target(conn, destination_id=destination_id)
    if found is None:
        return None
    row = found.row
    return DeliveryTarget(
        id=row.id,
        name=row.name,
        environment_id=row.environment_id,
        environment_flag=found.flag,
        endpoint=row.endpoint,
        verification_token=_open_token(rt.secret_box, row),
        auth_credential_id=row.auth_credential_id,
        verified=row.verified,
        cloud_provider_settings=None
        if row.cloud_provider_settings is None
        else CloudProviderSettings.model_validate(row.cloud_provider_settings),
        delivery=row.delivery_settings(),
    )


async def using_credential(conn: Connection, *, credential_id: str) -> list[tuple[str, str]]:
    """(id, name) of the destinations that send with this auth credential."""
    return await store.using_credential(conn, credential_id=credential_id)


async def reseal_tokens(conn: Connection, box: SecretBox) -> int:
    """Moves every verification token onto the first key; returns how many moved."""
    count = 0
    for seq, destination_id, sealed in await store.sealed_tokens(conn):
        if box.is_current(sealed):
            continue
        resealed = box.reseal(
            sealed,
            token_context(destination_id),
            what=f"the verificationToken of destination {destination_id}",
        )
        await store.set_token(conn, seq=seq, sealed=resealed)
        count += 1
    return count


@dataclass(frozen=True, slots=True)
class Recipient:
    """A destination as the send API routes to it."""

    id: str
    name: str
    environment_id: str
    # It may be sent to: a verified URL destination, or a cloud destination with a
    # credential to write with.
    receiving: bool
    cloud: bool
    delivery: DeliverySettings


async def recipient(conn: Connection, *, destination_id: str) -> Recipient | None:
    """The destination as the send API sees it, in the caller's write transaction; on
    PostgreSQL its row stays locked against a change (say, a new endpoint that clears
    verification) until that transaction commits, so a message is never queued for a
    receiver that stopped being proven meanwhile."""
    row = await store.recipient(conn, destination_id=destination_id)
    if row is None:
        return None
    return Recipient(
        id=row.id,
        name=row.name,
        environment_id=row.environment_id,
        receiving=row.auth_credential_id is not None
        if row.cloud
        else row.verified and row.endpoint is not None,
        cloud=row.cloud,
        delivery=row.delivery_settings(),
    )


async def name_in_environment(
    conn: Connection, *, destination_id: str, environment_id: str | None = None
) -> str | None:
    """The destination's name, or None when there is no such destination (in
    `environment_id`, when given). For features that show a destination they refer to."""
    found = await store.target(conn, destination_id=destination_id)
    if found is None or environment_id not in (None, found.row.environment_id):
        return None
    return found.row.name
