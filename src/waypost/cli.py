"""The `waypost` command: serve, migrate, and set up organizations, users and tokens."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from waypost import __version__
from waypost.auth import service as auth
from waypost.auth.service import InvalidKeys
from waypost.auth.store import KeySet, TokenRow
from waypost.crypto import SecretKeyError
from waypost.db import DatabaseUrlError, migrate, new_id
from waypost.http import ProblemError
from waypost.kinds import EnvRole, OrgRole
from waypost.organizations import service as organizations
from waypost.runtime import Runtime, open_runtime, secret_box
from waypost.settings import Settings

T = TypeVar("T")


class _PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # its name says it: TOKEN_ID, not TOKEN_ID <str>


def _plain_types(params: list[Any], ctx: Any) -> list[Any]:
    """Help without type noise: a flag (`--json`, `--help`) shows no `<bool>`, a value
    its metavar (`ORG_ID`, or its choices) rather than `<int>` or `<list[str]>`, an
    argument its name alone."""
    for param in params:
        if isinstance(param, TyperArgument) and not isinstance(param, _PlainArgument):
            param.__class__ = _PlainArgument
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
        elif isinstance(param, TyperOption) and param.metavar is None:
            if param.is_flag:
                param.metavar = ""
            else:
                shown = param.display_type(ctx)  # "<int range>", "<owner|admin|member>"
                name = (param.name or "value").upper()
                param.metavar = shown.strip("<>") if "|" in shown else name
    return params


class Group(TyperGroup):
    """Every `waypost` group: its own options and its commands' show plain metavars."""

    def get_params(self, ctx: Any) -> Any:
        return _plain_types(super().get_params(ctx), ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, Group):
            _plain_types([*command.params, command.get_help_option(ctx)], ctx)
        return command


cli = typer.Typer(
    cls=Group,
    help="Waypost: a self-hosted, Redox-compatible Platform API for destinations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _group(name: str, help: str) -> typer.Typer:
    group = typer.Typer(cls=Group, help=help, no_args_is_help=True)
    cli.add_typer(group, name=name)
    return group


orgs_cli = _group("orgs", "Organizations.")
users_cli = _group("users", "Users and their roles.")
tokens_cli = _group("tokens", "API tokens.")
keys_cli = _group("keys", "Public keys for the JWT token flow (Redox's user API keys).")
secrets_cli = _group("secrets", "Secrets encrypted at rest.")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
# A user is named by id or by email; an email may be a user in several organizations.
UserRef = Annotated[
    str,
    typer.Option(
        "--user",
        metavar="USER",
        help="The user's id, or email (with --org when several organizations have it).",
    ),
]
OrgOfUser = Annotated[
    int | None,
    typer.Option(
        "--org",
        metavar="ORG_ID",
        help="The organization of the --user email, when several have it.",
    ),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"waypost {__version__}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print Waypost's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Waypost: a self-hosted, Redox-compatible Platform API for destinations."""


def fail(message: str) -> typer.Exit:
    typer.echo(f"waypost: error: {message}", err=True)
    return typer.Exit(1)


def with_runtime(work: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
    """Migrates, runs `work` on a runtime, and turns failures into one line."""
    settings = Settings()
    try:
        migrate(settings.resolved_database_url())

        async def run() -> T:
            async with open_runtime(settings, pool_size=2, on_first_use=True) as rt:
                return await work(rt)

        return asyncio.run(run())
    except ProblemError as exc:
        # The message alone: a command-line option is not a JSON field.
        raise fail("; ".join(m for _, m in exc.errors) if exc.errors else exc.detail) from None
    except (InvalidKeys, DatabaseUrlError, SecretKeyError) as exc:
        raise fail(str(exc)) from None
    except sa.exc.OperationalError as exc:
        raise fail(f"cannot reach the database: {exc.orig}") from None


def show(data: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data) if as_json else text)


@cli.command("migrate")
def migrate_cmd() -> None:
    """Bring the database schema up to date."""
    with_runtime(_noop)
    typer.echo("database is up to date")


async def _noop(_rt: Runtime) -> None:
    return None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="API processes sharing the port (more than 1 needs PostgreSQL).",
        ),
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="Log each request line.")] = True,
    worker: Annotated[
        bool, typer.Option(help="Deliver messages in this process too (--no-worker: API only).")
    ] = True,
) -> None:
    """Migrate, then serve the API (and deliver, unless --no-worker)."""
    import os

    import uvicorn

    # The app is built by uvicorn from the environment, in each of its processes.
    os.environ["WAYPOST_DELIVERY_WORKER"] = "true" if worker else "false"

    settings = Settings()
    if workers > 1 and settings.resolved_database_url().startswith("sqlite"):
        # Each process would write the file on its own turn, every one waiting on the others.
        raise fail(
            f"--workers {workers} needs PostgreSQL (WAYPOST_DATABASE_URL=postgresql://...): "
            "the embedded SQLite database serves one process; run `waypost serve` without "
            "--workers"
        )
    try:
        secret_box(settings)  # fail now, with one line, rather than in every worker
    except (ValueError, SecretKeyError) as exc:
        raise fail(str(exc)) from None
    with_runtime(_noop)
    # Waypost's own logs go out the way uvicorn's do.
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["waypost"] = {"handlers": ["default"], "level": "INFO"}
    uvicorn.run(
        "waypost.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
        log_config=log_config,
    )


@cli.command("worker")
def worker_command(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=1000, help="Sends in flight at once (default WAYPOST_WORKER_CONCURRENCY)."
        ),
    ] = None,
) -> None:
    """Migrate, then deliver queued messages until stopped (Ctrl-C or SIGTERM)."""
    import logging
    import signal

    from waypost.delivery.worker import Worker

    settings = Settings()
    with_runtime(_noop)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    async def deliver() -> None:
        async with open_runtime(settings) as rt:
            worker = Worker(rt, concurrency=concurrency or settings.worker_concurrency)
            loop = asyncio.get_running_loop()
            running = asyncio.create_task(worker.run())
            stopping = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stopping.set)
            typer.echo(f"waypost worker {worker.owner}: delivering", err=True)
            await stopping.wait()
            await worker.stop()
            await running

    try:
        asyncio.run(deliver())
    except (ValueError, SecretKeyError) as exc:
        raise fail(str(exc)) from None


@cli.command()
def bootstrap(
    owner_email: Annotated[
        str, typer.Option(metavar="EMAIL", help="Email of the first owner.")
    ] = "owner@localhost",
    base_url: Annotated[
        str, typer.Option(metavar="URL", help="The server's address, for the example printed.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """On an empty database, create a default organization and print a token."""

    async def work(rt: Runtime) -> auth.EnrolledOrganization | None:
        if await organizations.has_organizations(rt.db):
            return None
        return await auth.enroll_organization(
            rt.db, name="Default", owner_email=owner_email, command="bootstrap"
        )

    enrolled = with_runtime(work)
    if enrolled is None:
        typer.echo(
            "Waypost already has an organization. A lost token cannot be shown again; "
            "issue another:\n"
            "  waypost users list                      # every user, with ids and emails\n"
            "  waypost tokens create --user EMAIL_OR_ID"
        )
        return
    created, token = enrolled.organization, enrolled.token.token
    owner = created.owner
    dev = created.environments[0]
    typer.echo(
        f"Created organization {created.id} with Development, Staging and "
        f"Production, and owner {owner.email} (user id {owner.id}).\n"
        f"API token (shown once): {token}\n"
        f"Lost it? `waypost tokens create --user {owner.email}` issues another.\n\nTry:\n"
        f"  curl -s -X POST {base_url}/platform/v1/environments/{dev.id}/destinations \\\n"
        f"    -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' \\\n"
        f'    -d \'{{"name": "My receiver", "endpoint": "https://example.org/redox"}}\'\n'
    )


@orgs_cli.command("create")
def orgs_create(
    name: Annotated[str, typer.Option(metavar="NAME", help="Organization name.")],
    owner_email: Annotated[str, typer.Option(metavar="EMAIL", help="Email of the owner.")],
    as_json: JsonFlag = False,
) -> None:
    """Create an organization, its three environments, an owner and a token."""
    enrolled = with_runtime(
        lambda rt: auth.enroll_organization(
            rt.db, name=name, owner_email=owner_email, command="orgs create"
        )
    )
    created, token = enrolled.organization, enrolled.token
    data = {
        "organization": {"id": created.id, "name": created.name},
        "environments": [
            {"id": e.id, "name": e.name, "environmentFlag": e.flag.value}
            for e in created.environments
        ],
        "user": {"id": created.owner.id, "email": created.owner.email},
        "token": token.token,
        "tokenId": token.id,
    }
    envs = "\n".join(f"  {e.flag.value:<12} {e.id}" for e in created.environments)
    show(
        data,
        as_json,
        f"organization {created.id} ({name})\n{envs}\n"
        f"owner {created.owner.email} ({created.owner.id})\n"
        f"token (shown once): {token.token}",
    )


@orgs_cli.command("list")
def orgs_list(as_json: JsonFlag = False) -> None:
    """List every organization with its environments and number of users."""
    found = with_runtime(lambda rt: organizations.list_organizations(rt.db))
    data = [
        {
            "id": o.organization.id,
            "name": o.organization.name,
            "createdAt": o.organization.created_at,
            "users": o.organization.users,
            "environments": [
                {"id": e.id, "name": e.name, "environmentFlag": e.flag.value}
                for e in o.environments
            ],
        }
        for o in found
    ]
    blocks = [
        f"organization {o.organization.id} ({o.organization.name})  "
        f"created {o.organization.created_at}  {o.organization.users} user(s)\n"
        + "\n".join(f"  {e.flag.value:<12} {e.id}" for e in o.environments)
        for o in found
    ]
    show({"organizations": data}, as_json, "\n".join(blocks) or "no organizations")


def _parse_roles(roles: list[str]) -> dict[str, EnvRole]:
    parsed: dict[str, EnvRole] = {}
    for item in roles:
        env_id, sep, role = item.partition("=")
        if not sep or role not in EnvRole.__members__.values():
            raise fail(f"--role takes ENV_ID=engineer|support|viewer, not {item!r}")
        if env_id in parsed:
            raise fail(f"--role names environment {env_id} twice; a user has one role there")
        parsed[env_id] = EnvRole(role)
    return parsed


@users_cli.command("create")
def users_create(
    org: Annotated[int, typer.Option(metavar="ORG_ID", help="Organization id.")],
    email: Annotated[str, typer.Option(metavar="EMAIL", help="The user's email.")],
    org_role: Annotated[OrgRole, typer.Option(help="Organization role.")] = OrgRole.MEMBER,
    role: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ENV_ID=ROLE",
            help="A role in an environment: engineer, support or viewer; repeatable. "
            "`waypost orgs list` shows the environment ids.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a user with roles, and a token for them."""
    env_roles = _parse_roles(role or [])
    enrolled = with_runtime(
        lambda rt: auth.enroll_user(
            rt.db,
            organization_id=org,
            email=email,
            org_role=org_role,
            env_roles=env_roles,
            command="users create",
        )
    )
    user, token = enrolled.user.user, enrolled.token
    data = {
        "id": user.id,
        "email": user.email,
        "organization": {"id": user.organization_id},
        "orgRole": user.org_role.value,
        "environmentRoles": {e: r.value for e, r in enrolled.user.environment_roles.items()},
    }
    show(
        {"user": data, "token": token.token, "tokenId": token.id},
        as_json,
        f"user {user.email} ({user.id})\ntoken (shown once): {token.token}",
    )


async def _user_id(rt: Runtime, user: str, org: int | None) -> str:
    """The id of the user that --user (an id or an email) and --org name."""
    found = await organizations.find_user(rt.db, user=user, organization_id=org)
    return found.id


@users_cli.command("list")
def users_list(
    org: Annotated[
        int | None,
        typer.Option(metavar="ORG_ID", help="Only this organization's users (default: all)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List users: id, email, organization, roles (to find the user for `tokens create`)."""
    found = with_runtime(lambda rt: organizations.list_users(rt.db, organization_id=org))
    data = [
        {
            "id": u.user.id,
            "email": u.user.email,
            "organization": {"id": u.user.organization_id},
            "orgRole": u.user.org_role.value,
            "createdAt": u.user.created_at,
            "environmentRoles": [
                {"environment": {"id": e.id, "name": e.name}, "role": role.value}
                for e, role in u.environment_roles
            ],
        }
        for u in found
    ]
    lines = [
        f"{u.user.id}  {u.user.email}  organization {u.user.organization_id}  "
        f"{u.user.org_role.value}  "
        + (", ".join(f"{e.name}={role.value}" for e, role in u.environment_roles) or "no roles")
        for u in found
    ]
    show({"users": data}, as_json, "\n".join(lines) or "no users")


@tokens_cli.command("create")
def tokens_create(
    user: UserRef,
    org: OrgOfUser = None,
    name: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="What the token is for, shown by `tokens list`."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a new API token for a user (to replace a lost one, say)."""

    async def work(rt: Runtime) -> auth.IssuedToken:
        return await auth.create_token(rt.db, user_id=await _user_id(rt, user, org), name=name)

    issued = with_runtime(work)
    show(
        {"tokenId": issued.id, "token": issued.token},
        as_json,
        f"token {issued.id}\ntoken (shown once): {issued.token}",
    )


@tokens_cli.command("list")
def tokens_list(
    user: UserRef,
    org: OrgOfUser = None,
    all_tokens: Annotated[
        bool, typer.Option("--all", help="Include revoked and expired tokens.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List a user's tokens: id, name, created, last used (never the token itself)."""

    async def work(rt: Runtime) -> list[TokenRow]:
        return await auth.list_tokens(
            rt.db, user_id=await _user_id(rt, user, org), ended=all_tokens
        )

    found = with_runtime(work)
    data = [
        {
            "id": t.id,
            "name": t.name,
            "createdAt": t.created_at,
            "lastUsedAt": t.last_used_at,
            "expiresAt": t.expires_at,
            "revokedAt": t.revoked_at,
            "clientId": t.client_id,
        }
        for t in found
    ]
    lines = [
        f"{t.id}  {t.name or '(no name)'}  created {t.created_at}  "
        f"last used {t.last_used_at or 'never'}"
        + (f"  expires {t.expires_at}" if t.expires_at else "")
        + (f"  (key set {t.client_id})" if t.client_id else "")
        + (f"  revoked {t.revoked_at}" if t.revoked_at else "")
        for t in found
    ]
    show({"tokens": data}, as_json, "\n".join(lines) or "no tokens")


@tokens_cli.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id (`tokens list` shows them).")],
) -> None:
    """Revoke a token; it stops working on the next request."""
    with_runtime(lambda rt: auth.revoke_token(rt.db, token_id=token_id))
    typer.echo(f"token {token_id} revoked")


@keys_cli.command("create")
def keys_create(
    user: UserRef,
    org: OrgOfUser = None,
    jwks: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="A JSON Web Key Set file of public keys.", dir_okay=False
        ),
    ] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate an ES384 key pair; print it once.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register public keys for a user; prints the client id to use as iss and sub."""
    if (jwks is None) == (not generate):
        raise fail("give exactly one of --jwks FILE or --generate")
    private_pem = None
    try:
        if jwks is not None:
            keys = auth.check_jwks(json.loads(jwks.read_text()))
        else:
            private_pem, public_jwk = _generate_key()
            keys = auth.check_jwks({"keys": [public_jwk]})
    except OSError as exc:
        raise fail(f"cannot read {jwks}: {exc.strerror}") from None
    except ValueError as exc:  # InvalidKeys, and JSON that does not parse
        raise fail(f"{jwks or 'generated key'}: {exc}") from None

    async def work(rt: Runtime) -> str:
        return await auth.register_keys(rt.db, user_id=await _user_id(rt, user, org), keys=keys)

    client_id = with_runtime(work)
    data: dict[str, Any] = {"clientId": client_id, "kids": [k["kid"] for k in keys]}
    text = f"client id {client_id}\nkids: {', '.join(data['kids'])}"
    if private_pem is not None:
        data["privateKey"] = private_pem
        text += f"\nprivate key (shown once; keep it secret):\n{private_pem}"
    show(data, as_json, text)


def _generate_key() -> tuple[str, dict[str, Any]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    private = ec.generate_private_key(ec.SECP384R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    public_jwk.update(kid=new_id(), alg="ES384", use="sig")
    return pem, public_jwk


@keys_cli.command("list")
def keys_list(user: UserRef, org: OrgOfUser = None, as_json: JsonFlag = False) -> None:
    """List a user's key sets."""

    async def work(rt: Runtime) -> list[KeySet]:
        return await auth.list_keys(rt.db, user_id=await _user_id(rt, user, org))

    key_sets = with_runtime(work)
    lines = [
        f"{k.client_id}  kids: {', '.join(k.kids)}"
        + (f"  (revoked {k.revoked_at})" if k.revoked_at else "")
        for k in key_sets
    ]
    data = [
        {
            "clientId": k.client_id,
            "createdAt": k.created_at,
            "revokedAt": k.revoked_at,
            "kids": k.kids,
        }
        for k in key_sets
    ]
    show({"keys": data}, as_json, "\n".join(lines) or "no keys")


@keys_cli.command("revoke")
def keys_revoke(
    client_id: Annotated[str, typer.Argument(help="Client id (`keys list` shows them).")],
) -> None:
    """Revoke a key set, and the platform tokens it issued."""
    with_runtime(lambda rt: auth.revoke_keys(rt.db, client_id=client_id))
    typer.echo(f"key set {client_id} revoked")


@secrets_cli.command("reencrypt")
def secrets_reencrypt(as_json: JsonFlag = False) -> None:
    """Re-encrypt every stored secret with the first key of WAYPOST_SECRET_KEY.

    Rotation: set WAYPOST_SECRET_KEY=NEW,OLD everywhere, run this, then drop OLD."""
    from waypost.rotation import reencrypt_all

    try:
        box = secret_box(Settings())
    except (ValueError, SecretKeyError) as exc:
        raise fail(str(exc)) from None
    count = with_runtime(lambda rt: reencrypt_all(rt.db, box))
    show(
        {"reencrypted": count},
        as_json,
        f"re-encrypted {count} secret(s) with the first key of WAYPOST_SECRET_KEY",
    )


def main() -> None:
    cli(prog_name="waypost")


if __name__ == "__main__":
    main()
