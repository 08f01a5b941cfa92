"""Auth credential rules: who may do what, what each strategy needs, and where secrets go.

Secrets are sealed with the runtime's SecretBox, each bound to its credential and field,
and opened only to fetch a token or to build the header a delivery sends.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from cryptography.exceptions import InvalidTag
from pydantic import JsonValue

from waypost import clock
from waypost.access import Action, Principal, require_environment_role
from waypost.audit import service as audit
from waypost.audit.service import audited_write
from waypost.credentials import store
from waypost.credentials.azure import CachedTokenCredential, StorageSigner
from waypost.credentials.schemas import (
    CREDENTIAL_OUT,
    AuthCredentialOut,
    CredentialCreate,
    CredentialTestOut,
    CredentialUpdate,
    StrategyOut,
)
from waypost.credentials.store import CredentialRow, Located
from waypost.credentials.strategies import (
    CLIENT_CREDENTIALS_ONLY,
    STRATEGIES,
    Strategy,
    StrategyName,
    has_flag,
    kind_refusal,
)
from waypost.credentials.tokens import (
    CredentialMissing,
    NoAccessToken,
    SecretsUnreadable,
    TokenError,
    fetch_token,
)
from waypost.crypto import SecretBox, SecretKeyError
from waypost.db import Connection, canonical_id, new_id
from waypost.destinations import service as destinations
from waypost.fields import https_refusal
from waypost.http import Conflict, Invalid
from waypost.organizations.service import environment_access
from waypost.runtime import Runtime
from waypost.runtime.token_cache import Token

_WHAT = "auth credential"
# Destinations named in a 409 before "and N more".
_NAMED_IN_CONFLICT = 10


def secret_context(credential_id: str, field: str) -> str:
    """Binds a ciphertext to its credential and field: it cannot be moved to another."""
    return f"authCredential:{credential_id}:{field}"


def strategies() -> dict[str, StrategyOut]:
    return {
        name: StrategyOut(
            available_fields=list(strategy.fields),
            required_fields=list(strategy.required),
            secret_fields=list(strategy.secrets),
        )
        for name, strategy in STRATEGIES.items()
    }


def effective_settings(strategy: Strategy, stored: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """The non-secret fields with the strategy's defaults filled in."""
    return {**strategy.defaults, **stored}


def _out(row: CredentialRow, organization_id: int) -> AuthCredentialOut:
    """The credential as every route shows it: secrets only as `has<Field>`."""
    strategy = STRATEGIES[row.auth_strategy]
    settings = effective_settings(strategy, row.settings)
    shown: dict[str, JsonValue] = {
        "id": row.id,
        "name": row.name,
        "environmentId": row.environment_id,
        "organization": organization_id,
        "authStrategy": row.auth_strategy.value,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }
    for name in strategy.settings:
        shown[name] = settings.get(name)
    for name in strategy.secrets:
        shown[has_flag(name)] = name in row.secrets
    return CREDENTIAL_OUT[row.auth_strategy].model_validate(shown)


async def _access(
    conn: Connection, principal: Principal, credential_id: str, action: Action
) -> Located:
    key = canonical_id(credential_id)
    found = None
    if key is not None:
        found = await store.locate(
            conn,
            credential_id=key,
            organization_id=principal.organization_id,
            user_id=principal.user_id,
            for_update=action is Action.WRITE,
        )
    require_environment_role(found.role if found else None, action, what=_WHAT)
    assert found is not None  # require_environment_role refuses a missing role
    return found


def _wire_fields(body: CredentialCreate | CredentialUpdate) -> dict[str, Any]:
    """The strategy fields the body set, under their wire names."""
    own = {"name", "auth_strategy", "environment_id", "organization"}
    fields = type(body).model_fields
    return {
        fields[name].alias or name: getattr(body, name)
        for name in body.model_fields_set
        if name not in own
    }


def _foreign_fields(strategy: Strategy, given: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors = []
    for name in given:
        if name in strategy.fields:
            continue
        message = f"is not a field of the {strategy.name} strategy"
        if name in ("username", "password") and strategy.name in (
            StrategyName.OAUTH2,
            StrategyName.SMART,
        ):
            message = f"{message}: {CLIENT_CREDENTIALS_ONLY}"
        errors.append((name, message))
    return errors


def _check(
    strategy: Strategy, flag: str, settings: Mapping[str, Any], secret_names: set[str]
) -> None:
    """The rules on the credential as it will be stored; every broken one is named."""
    errors = [
        (name, f"is required by the {strategy.name} strategy")
        for name in strategy.required
        if name not in settings and name not in secret_names
    ]
    if (refusal := https_refusal(settings.get("url"), flag)) is not None:
        errors.append(("url", refusal))
    custom_name, custom_value = settings.get("customFieldName"), settings.get("customFieldValue")
    if (custom_name is None) != (custom_value is None):
        missing = "customFieldValue" if custom_value is None else "customFieldName"
        errors.append((missing, "customFieldName and customFieldValue go together"))
    if custom_name is not None and strategy.name == StrategyName.OAUTH2:
        effective = effective_settings(strategy, settings)
        taken = {effective[n] for n in ("grantTypeName", "clientIdName", "clientSecretName")}
        taken |= {"scope", "audience", "resource"}
        if custom_name in taken:
            errors.append(
                ("customFieldName", f"{custom_name} is already sent by the token request")
            )
    if errors:
        raise Invalid.many(errors)


def _audited(old: CredentialRow | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed, for the audit trail; a secret shows only that it changed. `old` is
    the stored row (None on create), `new` the row's name, settings and secrets as they
    will be."""
    before = {"name": old.name, **old.settings} if old is not None else {}
    after = {"name": new["name"], **new["settings"]}
    after.update({name: None for name in before if name not in after})
    old_secrets = old.secrets if old is not None else {}
    changed = {
        name: True
        for name in old_secrets.keys() | new["secrets"].keys()
        if old_secrets.get(name) != new["secrets"].get(name)
    }
    return audit.changes(before, {**after, **changed}, secrets=frozenset(changed))


def _seal(rt: Runtime, credential_id: str, name: str, value: str) -> str:
    return rt.secret_box.encrypt(value, secret_context(credential_id, name))


def _open_secrets(rt: Runtime, row: CredentialRow) -> dict[str, str]:
    try:
        return {
            name: rt.secret_box.decrypt(sealed, secret_context(row.id, name))
            for name, sealed in row.secrets.items()
        }
    except (InvalidTag, SecretKeyError):
        raise SecretsUnreadable(
            "the credential's secrets cannot be opened with the configured "
            "WAYPOST_SECRET_KEY; set the secrets again"
        ) from None


async def create(rt: Runtime, *, principal: Principal, body: CredentialCreate) -> AuthCredentialOut:
    strategy = STRATEGIES[body.auth_strategy]
    given = {k: v for k, v in _wire_fields(body).items() if v is not None}
    credential_id = new_id()
    created = clock.now()
    async with audited_write(rt.db, principal, "auth-credential-created") as (conn, event):
        event.details["authCredentialId"] = credential_id
        environment = await environment_access(
            conn, principal, str(body.environment_id), Action.WRITE, what=_WHAT
        )
        if body.organization is not None and body.organization != principal.organization_id:
            raise Invalid(
                "organization", f"must be your organization's id, {principal.organization_id}"
            )
        errors = _foreign_fields(strategy, given)
        if errors:
            raise Invalid.many(errors)
        settings = {k: v for k, v in given.items() if k not in strategy.secrets}
        secrets = {k: v for k, v in given.items() if k in strategy.secrets}
        _check(strategy, environment.flag, settings, set(secrets))
        values = {
            "id": credential_id,
            "environment_id": environment.id,
            "name": body.name,
            "auth_strategy": strategy.name.value,
            "settings": settings,
            "secrets": {k: _seal(rt, credential_id, k, v) for k, v in secrets.items()},
            "created_at": created,
            "updated_at": created,
        }
        row = await store.insert(conn, values)
        event.details.update(
            environmentId=environment.id,
            name=body.name,
            authStrategy=strategy.name.value,
            fields=_audited(None, values),
        )
    return _out(row, principal.organization_id)


async def list_in_environment(
    rt: Runtime, *, principal: Principal, environment_id: str
) -> list[AuthCredentialOut]:
    async with rt.db.read() as conn:
        environment = await environment_access(
            conn, principal, environment_id, Action.READ, what=_WHAT
        )
        rows = await store.in_environment(conn, environment_id=environment.id)
    return [_out(r, principal.organization_id) for r in rows]


async def get(rt: Runtime, *, principal: Principal, credential_id: str) -> AuthCredentialOut:
    async with rt.db.read() as conn:
        found = await _access(conn, principal, credential_id, Action.READ)
    return _out(found.row, principal.organization_id)


def _changes(
    rt: Runtime, principal: Principal, found: Located, body: CredentialUpdate
) -> dict[str, Any]:
    """Column changes for the fields a PATCH gave; absent fields keep their values."""
    row = found.row
    strategy = STRATEGIES[row.auth_strategy]
    changes: dict[str, Any] = {}
    fixed = body.model_fields_set
    if "name" in fixed:
        if body.name is None:
            raise Invalid("name", "must not be null")
        changes["name"] = body.name
    if body.auth_strategy is not None and body.auth_strategy != row.auth_strategy:
        raise Invalid(
            "authStrategy", f"is {row.auth_strategy} and cannot change; create a new credential"
        )
    if body.environment_id is not None and str(body.environment_id) != row.environment_id:
        raise Invalid("environmentId", "a credential cannot move to another environment")
    organization_id = principal.organization_id
    if body.organization is not None and body.organization != organization_id:
        raise Invalid("organization", f"must be your organization's id, {organization_id}")
    given = _wire_fields(body)
    errors = _foreign_fields(strategy, given)
    if errors:
        raise Invalid.many(errors)
    settings = dict(row.settings)
    secrets = dict(row.secrets)
    for name, value in given.items():
        if value is None:
            settings.pop(name, None)
            secrets.pop(name, None)
        elif name in strategy.secrets:
            secrets[name] = _seal(rt, row.id, name, value)
        else:
            settings[name] = value
    _check(strategy, found.flag, settings, set(secrets))
    if settings != row.settings:
        changes["settings"] = settings
    if secrets != row.secrets:
        changes["secrets"] = secrets
    return changes


async def update(
    rt: Runtime, *, principal: Principal, credential_id: str, body: CredentialUpdate
) -> AuthCredentialOut:
    async with audited_write(rt.db, principal, "auth-credential-updated") as (conn, event):
        event.details["authCredentialId"] = credential_id
        found = await _access(conn, principal, credential_id, Action.WRITE)
        row = found.row
        changes = _changes(rt, principal, found, body)
        new = {"name": row.name, "settings": row.settings, "secrets": row.secrets, **changes}
        event.details["changes"] = _audited(row, new)
        if changes:
            changes["updated_at"] = clock.now()
        saved = await store.update(conn, row, changes)
    return _out(saved, principal.organization_id)


class _InUse(Exception):
    """The database refused to delete a credential that destinations still use."""


async def delete(rt: Runtime, *, principal: Principal, credential_id: str) -> str:
    try:
        async with audited_write(rt.db, principal, "auth-credential-deleted") as (conn, event):
            event.details["authCredentialId"] = credential_id
            found = await _access(conn, principal, credential_id, Action.WRITE)
            event.details["name"] = found.row.name
            try:
                await store.delete(conn, found.row)
            except sa.exc.IntegrityError:
                # A DELETE can break no rule but a reference to the row (SQLite reports the
                # ON DELETE RESTRICT of destinations as a trigger constraint, not a foreign
                # key one).
                raise _InUse from None
    except _InUse:
        # Named after the refused transaction has ended: on PostgreSQL it can run nothing more.
        async with rt.db.read() as conn:
            users = await destinations.using_credential(conn, credential_id=found.row.id)
        raise Conflict(_in_use(found.row.id, users)) from None
    await rt.tokens.forget(found.row.id)
    return f"Auth credential id [{found.row.id}] was successfully deleted."


def _in_use(credential_id: str, users: list[tuple[str, str]]) -> str:
    named = ", ".join(f"{name} ({id_})" for id_, name in users[:_NAMED_IN_CONFLICT])
    more = len(users) - _NAMED_IN_CONFLICT
    if more > 0:
        named += f" and {more} more"
    return (
        f"Auth credential {credential_id} is used by {len(users)} destination(s): {named}. "
        "Detach it from them (PATCH authCredential to null) or delete them first."
    )


async def check_token(
    rt: Runtime, *, principal: Principal, credential_id: str
) -> CredentialTestOut:
    """Fetches a token now, bypassing the cache (and refreshing it on success)."""
    async with rt.db.read() as conn:
        found = await _access(conn, principal, credential_id, Action.WRITE)
    row = found.row
    if not STRATEGIES[row.auth_strategy].fetches_token:
        raise Invalid(
            "authStrategy",
            f"a {row.auth_strategy} credential has no token to fetch: Waypost sends its "
            "values with each message as they are, so there is nothing to test",
        )
    try:
        token = await _fetch(rt, row)
    except TokenError as exc:
        return CredentialTestOut(
            success=False, status=exc.status, error=exc.message, expires_in=None
        )
    await rt.tokens.put(row.id, row.updated_at, token)
    return CredentialTestOut(
        success=True, status=token.status, error=None, expires_in=token.expires_in
    )


async def _fetch(rt: Runtime, row: CredentialRow) -> Token:
    strategy = STRATEGIES[row.auth_strategy]
    return await fetch_token(
        rt.outbound,
        strategy.name,
        effective_settings(strategy, row.settings),
        _open_secrets(rt, row),
        timeout_seconds=rt.settings.verify_timeout_seconds,
    )


# --- for other features ------------------------------------------------------------------


async def _load(rt: Runtime, credential_id: str) -> CredentialRow:
    async with rt.db.read() as conn:
        row = await store.by_id(conn, credential_id=credential_id)
    if row is None:
        raise CredentialMissing(f"auth credential {credential_id} does not exist")
    return row


async def _token(rt: Runtime, row: CredentialRow) -> str:
    """The credential's access token: from the cache (shared by every process) while it
    holds one for this version of the credential, else fetched once for all callers."""
    return await rt.tokens.get_or_fetch(row.id, row.updated_at, lambda: _fetch(rt, row))


async def access_token(rt: Runtime, credential_id: str) -> str:
    """A valid access token for an OAuth_2.0_2-legged or SMART_Backend credential, from
    the process's cache when it holds one, else fetched once for all concurrent callers.
    Raises a TokenError saying why there is none."""
    row = await _load(rt, credential_id)
    if not STRATEGIES[row.auth_strategy].fetches_token:
        raise NoAccessToken(f"a {row.auth_strategy} credential has no access token")
    return await _token(rt, row)


async def authorization_headers(rt: Runtime, credential_id: str) -> dict[str, str]:
    """The headers a delivery sends to a destination that uses this credential. Raises a
    TokenError saying why there are none."""
    row = await _load(rt, credential_id)
    strategy = STRATEGIES[row.auth_strategy]
    refusal = kind_refusal(strategy.name, cloud=False)
    if refusal is not None:
        raise NoAccessToken(f"auth credential {credential_id}: {refusal}")
    if strategy.fetches_token:
        token = await _token(rt, row)
        return {"Authorization": f"Bearer {token}"}
    secrets = _open_secrets(rt, row)
    if strategy.name == StrategyName.API_KEY:
        return {str(row.settings["headerName"]): secrets["apiKeyValue"]}
    pair = f"{row.settings['username']}:{secrets['password']}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def fit_for_destination(conn: Connection, credential_id: str, cloud: bool) -> str | None:
    """Why this credential cannot serve a cloud (or URL) destination; None when it can,
    or when there is no such credential (the destination's foreign key says so)."""
    row = await store.by_id(conn, credential_id=credential_id)
    if row is None:
        return None
    return kind_refusal(StrategyName(row.auth_strategy), cloud=cloud)


async def storage_signer(rt: Runtime, credential_id: str, *, account_name: str) -> StorageSigner:
    """How a cloud destination's requests to Azure Storage are signed with this credential.
    Raises a TokenError saying why they cannot be."""
    row = await _load(rt, credential_id)
    strategy = STRATEGIES[row.auth_strategy]
    refusal = kind_refusal(strategy.name, cloud=True)
    if refusal is not None:
        raise NoAccessToken(f"auth credential {credential_id}: {refusal}")
    if strategy.name == StrategyName.OAUTH2:
        # The row just read serves the signer's life (the worker rebuilds it each second):
        # a token asked for per request costs the cache, not a database read.
        return CachedTokenCredential(lambda: _token(rt, row))
    secrets = _open_secrets(rt, row)
    if strategy.name == StrategyName.AZURE_SHARED_KEY:
        return AzureNamedKeyCredential(account_name, secrets["accountKey"])
    return AzureSasCredential(secrets["sasToken"])


async def reseal_secrets(conn: Connection, box: SecretBox) -> int:
    """Moves every credential secret onto the first key; returns how many moved."""
    count = 0
    for seq, credential_id, secrets in await store.all_sealed(conn):
        stale = [name for name, stored in secrets.items() if not box.is_current(stored)]
        for name in stale:
            secrets[name] = box.reseal(
                secrets[name],
                secret_context(credential_id, name),
                what=f"the {name} of auth credential {credential_id}",
            )
        if stale:
            await store.set_secrets(conn, seq=seq, secrets=secrets)
            count += len(stale)
    return count
