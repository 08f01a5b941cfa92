"""Auth credential rules: who may do what, what each strategy needs, and where secrets go.

Secrets are sealed with the runtime's SecretBox, each bound to its credential and field,
and opened only to fetch a token or to build the header a delivery sends.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from waypost.audit import service as audit
from waypost.audit.service import audited_write
from waypost.auth.permissions import Action, require_environment_role
from waypost.auth.principals import Principal
from waypost.credentials.cache import Token
from waypost.credentials.schemas import CredentialCreate, CredentialUpdate
from waypost.credentials.strategies import (
    CLIENT_CREDENTIALS_ONLY,
    STRATEGIES,
    Strategy,
    StrategyName,
    has_flag,
)
from waypost.credentials.tables import auth_credentials
from waypost.credentials.tokens import TokenError, fetch_token
from waypost.crypto import SecretBox, SecretKeyError
from waypost.db import Connection, canonical_id, new_id, now
from waypost.fields import https_refusal
from waypost.http import Conflict, Invalid
from waypost.organizations.service import caller_params, caller_role, environment_access
from waypost.organizations.tables import environments
from waypost.runtime import Runtime

_WHAT = "auth credential"
# Destinations named in a 409 before "and N more".
_NAMED_IN_CONFLICT = 10

# Statements are built once: SQLAlchemy then reuses their compiled form.
_credential_by_id = (
    sa.select(auth_credentials, environments.c.flag, environments.c.organization_id, caller_role)
    .join(environments, environments.c.id == auth_credentials.c.environment_id)
    .where(
        auth_credentials.c.id == sa.bindparam("credential_id"),
        environments.c.organization_id == sa.bindparam("organization_id"),
    )
)
_credential_by_id_for_update = _credential_by_id.with_for_update(of=auth_credentials)
_in_environment = (
    sa.select(auth_credentials.c.id)
    .where(
        auth_credentials.c.id == sa.bindparam("credential_id"),
        auth_credentials.c.environment_id == sa.bindparam("environment_id"),
    )
    # PostgreSQL: a concurrent delete waits for this transaction, then sees the reference.
    .with_for_update(read=True)
)
_in_environment_list = (
    sa.select(auth_credentials)
    .where(auth_credentials.c.environment_id == sa.bindparam("environment_id"))
    .order_by(auth_credentials.c.seq)
)
_for_token = sa.select(auth_credentials).where(
    auth_credentials.c.id == sa.bindparam("credential_id")
)
# The SET clause comes from the parameters given, so one statement serves every update.
_update_by_seq = auth_credentials.update().where(auth_credentials.c.seq == sa.bindparam("row_seq"))
_delete_by_seq = auth_credentials.delete().where(auth_credentials.c.seq == sa.bindparam("row_seq"))
_all_sealed = sa.select(
    auth_credentials.c.seq, auth_credentials.c.id, auth_credentials.c.secrets
).with_for_update()


def secret_context(credential_id: str, field: str) -> str:
    """Binds a ciphertext to its credential and field: it cannot be moved to another."""
    return f"authCredential:{credential_id}:{field}"


def strategies() -> dict[str, Any]:
    return {name: strategy.describe() for name, strategy in STRATEGIES.items()}


def effective_settings(strategy: Strategy, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The non-secret fields with the strategy's defaults filled in."""
    return {**strategy.defaults, **stored}


def view(row: Mapping[Any, Any], organization_id: int) -> dict[str, Any]:
    """The credential as the API shows it: secrets only as `has<Field>`."""
    strategy = STRATEGIES[row["auth_strategy"]]
    settings = effective_settings(strategy, row["settings"])
    shown: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "environmentId": row["environment_id"],
        "organization": organization_id,
        "authStrategy": row["auth_strategy"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }
    for name in strategy.settings:
        shown[name] = settings.get(name)
    for name in strategy.secrets:
        shown[has_flag(name)] = name in row["secrets"]
    return shown


async def _credential_access(
    conn: Connection, principal: Principal, credential_id: str, action: Action, *, lock: bool
) -> Any:
    query = _credential_by_id_for_update if lock else _credential_by_id
    params = {**caller_params(principal), "credential_id": canonical_id(credential_id)}
    row = (await conn.execute(query, params)).first() if params["credential_id"] else None
    require_environment_role(row.role if row else None, action, what=_WHAT)
    return row


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


def _audited(old: Any, new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed, for the audit trail; a secret shows only that it changed. `old` is
    the stored row (None on create), `new` the row's values as they will be."""
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


def _open_secrets(rt: Runtime, row: Mapping[Any, Any]) -> dict[str, str]:
    try:
        return {
            name: rt.secret_box.decrypt(sealed, secret_context(row["id"], name))
            for name, sealed in row["secrets"].items()
        }
    except (InvalidTag, SecretKeyError):
        raise TokenError(
            "the credential's secrets cannot be opened with the configured "
            "WAYPOST_SECRET_KEY; set the secrets again"
        ) from None


async def create(rt: Runtime, principal: Principal, body: CredentialCreate) -> dict[str, Any]:
    strategy = STRATEGIES[body.auth_strategy]
    given = {k: v for k, v in _wire_fields(body).items() if v is not None}
    credential_id = new_id()
    created = now()
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
        _check(strategy, environment["flag"], settings, set(secrets))
        values = {
            "id": credential_id,
            "environment_id": environment["id"],
            "name": body.name,
            "auth_strategy": strategy.name.value,
            "settings": settings,
            "secrets": {k: _seal(rt, credential_id, k, v) for k, v in secrets.items()},
            "created_at": created,
            "updated_at": created,
        }
        await conn.execute(auth_credentials.insert(), values)
        event.details.update(
            environmentId=environment["id"],
            name=body.name,
            authStrategy=strategy.name.value,
            fields=_audited(None, values),
        )
    return view(values, principal.organization_id)


async def list_in_environment(
    rt: Runtime, principal: Principal, environment_id: str
) -> list[dict[str, Any]]:
    async with rt.db.read() as conn:
        environment = await environment_access(
            conn, principal, environment_id, Action.READ, what=_WHAT
        )
        rows = (
            await conn.execute(_in_environment_list, {"environment_id": environment["id"]})
        ).all()
    return [view(r._mapping, principal.organization_id) for r in rows]


async def get(rt: Runtime, principal: Principal, credential_id: str) -> dict[str, Any]:
    async with rt.db.read() as conn:
        row = await _credential_access(conn, principal, credential_id, Action.READ, lock=False)
    return view(row._mapping, row.organization_id)


def _changes(rt: Runtime, row: Any, strategy: Strategy, body: CredentialUpdate) -> dict[str, Any]:
    """Column changes for the fields a PATCH gave; absent fields keep their values."""
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
    if body.organization is not None and body.organization != row.organization_id:
        raise Invalid("organization", f"must be your organization's id, {row.organization_id}")
    given = _wire_fields(body)
    errors = _foreign_fields(strategy, given)
    if errors:
        raise Invalid.many(errors)
    settings = dict(row.settings)
    secrets = dict(row.secrets)
    for name, value in given.items():
        kept = secrets if name in strategy.secrets else settings
        if value is None:
            kept.pop(name, None)
        elif name in strategy.secrets:
            kept[name] = _seal(rt, row.id, name, value)
        else:
            kept[name] = value
    _check(strategy, row.flag, settings, set(secrets))
    if settings != row.settings:
        changes["settings"] = settings
    if secrets != row.secrets:
        changes["secrets"] = secrets
    return changes


async def update(
    rt: Runtime, principal: Principal, credential_id: str, body: CredentialUpdate
) -> dict[str, Any]:
    async with audited_write(rt.db, principal, "auth-credential-updated") as (conn, event):
        event.details["authCredentialId"] = credential_id
        row = await _credential_access(conn, principal, credential_id, Action.WRITE, lock=True)
        strategy = STRATEGIES[row.auth_strategy]
        changes = _changes(rt, row, strategy, body)
        event.details["changes"] = _audited(row, {**row._mapping, **changes})
        if changes:
            changes["updated_at"] = now()
            await conn.execute(_update_by_seq, {"row_seq": row.seq, **changes})
    return view({**row._mapping, **changes}, row.organization_id)


async def delete(rt: Runtime, principal: Principal, credential_id: str) -> str:
    async with audited_write(rt.db, principal, "auth-credential-deleted") as (conn, event):
        event.details["authCredentialId"] = credential_id
        row = await _credential_access(conn, principal, credential_id, Action.WRITE, lock=True)
        event.details["name"] = row.name
        # Imported here: destinations also call this feature, to check what they attach.
        from waypost.destinations import service as destinations

        users = await destinations.using_credential(conn, row.environment_id, row.id)
        if users:
            named = ", ".join(f"{name} ({id_})" for id_, name in users[:_NAMED_IN_CONFLICT])
            more = len(users) - _NAMED_IN_CONFLICT
            if more > 0:
                named += f" and {more} more"
            raise Conflict(
                f"Auth credential {row.id} is used by {len(users)} destination(s): {named}. "
                "Detach it from them (PATCH authCredential to null) or delete them first."
            )
        await conn.execute(_delete_by_seq, {"row_seq": row.seq})
    rt.tokens.forget(row.id)
    return f"Auth credential id [{row.id}] was successfully deleted."


async def check_token(rt: Runtime, principal: Principal, credential_id: str) -> dict[str, Any]:
    """Fetches a token now, bypassing the cache (and refreshing it on success)."""
    async with rt.db.read() as conn:
        row = await _credential_access(conn, principal, credential_id, Action.WRITE, lock=False)
    strategy = STRATEGIES[row.auth_strategy]
    if not strategy.fetches_token:
        raise Invalid(
            "authStrategy",
            f"a {row.auth_strategy} credential has no token to fetch: Waypost sends its "
            "values with each message as they are, so there is nothing to test",
        )
    try:
        token = await _fetch(rt, row._mapping)
    except TokenError as exc:
        return {"success": False, "status": exc.status, "error": exc.message, "expiresIn": None}
    rt.tokens.put(row.id, row.updated_at, token)
    return {"success": True, "status": token.status, "error": None, "expiresIn": token.expires_in}


async def _fetch(rt: Runtime, row: Mapping[Any, Any]) -> Token:
    strategy = STRATEGIES[row["auth_strategy"]]
    return await fetch_token(
        rt.outbound,
        strategy.name,
        effective_settings(strategy, row["settings"]),
        _open_secrets(rt, row),
        timeout_seconds=rt.settings.verify_timeout_seconds,
    )


# --- for other features ------------------------------------------------------------------


async def in_environment(conn: Connection, credential_id: str, environment_id: str) -> bool:
    """Whether the credential exists in the environment. On PostgreSQL it stays locked
    against deletion until the caller's transaction ends, so a reference to it can be
    saved safely."""
    found = (
        await conn.execute(
            _in_environment, {"credential_id": credential_id, "environment_id": environment_id}
        )
    ).first()
    return found is not None


async def _load(rt: Runtime, credential_id: str) -> Any:
    async with rt.db.read() as conn:
        row = (await conn.execute(_for_token, {"credential_id": credential_id})).first()
    if row is None:
        raise TokenError(f"auth credential {credential_id} does not exist")
    return row


async def access_token(rt: Runtime, credential_id: str) -> str:
    """A valid access token for an OAuth_2.0_2-legged or SMART_Backend credential, from
    the process's cache when it holds one, else fetched once for all concurrent callers.
    Raises TokenError saying why there is none."""
    row = await _load(rt, credential_id)
    if not STRATEGIES[row.auth_strategy].fetches_token:
        raise TokenError(f"a {row.auth_strategy} credential has no access token")
    return await rt.tokens.get_or_fetch(row.id, row.updated_at, lambda: _fetch(rt, row._mapping))


async def authorization_headers(rt: Runtime, credential_id: str) -> dict[str, str]:
    """The headers a delivery sends to a destination that uses this credential."""
    row = await _load(rt, credential_id)
    strategy = STRATEGIES[row.auth_strategy]
    if strategy.fetches_token:
        token = await rt.tokens.get_or_fetch(
            row.id, row.updated_at, lambda: _fetch(rt, row._mapping)
        )
        return {"Authorization": f"Bearer {token}"}
    secrets = _open_secrets(rt, row._mapping)
    if strategy.name == StrategyName.API_KEY:
        return {row.settings["headerName"]: secrets["apiKeyValue"]}
    pair = f"{row.settings['username']}:{secrets['password']}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def reseal_secrets(conn: Connection, box: SecretBox) -> int:
    """Moves every credential secret onto the first key; returns how many moved."""
    count = 0
    for row in (await conn.execute(_all_sealed)).all():
        secrets: dict[str, Any] = dict(row.secrets)
        stale = [name for name, stored in secrets.items() if not box.is_current(stored)]
        for name in stale:
            secrets[name] = box.reseal(
                secrets[name],
                secret_context(row.id, name),
                what=f"the {name} of auth credential {row.id}",
            )
        if stale:
            await conn.execute(_update_by_seq, {"row_seq": row.seq, "secrets": secrets})
            count += len(stale)
    return count
