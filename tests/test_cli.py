"""The `waypost` command, as an operator would run it.

Most tests use the embedded SQLite database in a fresh data directory, and run the
command in this process (typer's CliRunner). Those that check a printed token against the
API point the command at the running test server's database (so they run on SQLite and
PostgreSQL); they, and a few that prove the installed console script itself, run it as a
subprocess. One runs on a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import waypost
from tests.support import Org, Server, scratch_postgres_database, start_server
from waypost.cli import cli
from waypost.crypto import new_secret_key

WAYPOST = str(Path(sys.executable).with_name("waypost"))
FLAGS = ["Development", "Staging", "Production"]
ZERO = "00000000-0000-0000-0000-000000000000"


def base_env(**waypost: str) -> dict[str, str]:
    """This process's environment without any WAYPOST_* setting, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    env.update({f"WAYPOST_{k}": v for k, v in waypost.items()})
    return env


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str
    unexpected: BaseException | None = None  # an exception the command let escape


# Set in an environment whose commands must run as a subprocess.
AS_SCRIPT = "_run_as_script"


def run_script(env: dict[str, str], *args: str) -> Done:
    """The installed console script in a process of its own, as an operator runs it. Used
    where the process itself is the point, and against the running server's database:
    this process must not open that SQLite file (see tests/support.py `sqlite_bytes`)."""
    env = {k: v for k, v in env.items() if k != AS_SCRIPT}
    done = subprocess.run([WAYPOST, *args], capture_output=True, text=True, env=env, timeout=60)
    return Done(done.returncode, done.stdout, done.stderr)


def run(env: dict[str, str], *args: str) -> Done:
    """The same command in this process (typer's CliRunner): no interpreter start-up."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("WAYPOST_")}
    given = {k: v for k, v in env.items() if k.startswith("WAYPOST_")}
    result = CliRunner().invoke(cli, list(args), env={**unset, **given}, prog_name="waypost")
    unexpected = result.exception
    if isinstance(unexpected, SystemExit):
        unexpected = None
    return Done(result.exit_code, result.stdout, result.stderr, unexpected)


def ok(env: dict[str, str], *args: str, script: bool = False) -> str:
    done = (run_script if script or AS_SCRIPT in env else run)(env, *args)
    assert done.unexpected is None, repr(done.unexpected)
    assert done.returncode == 0, f"{args}: rc={done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def ok_json(env: dict[str, str], *args: str, script: bool = False) -> dict[str, Any]:
    """Runs with --json; stdout must be exactly one JSON object."""
    out = ok(env, *args, "--json", script=script)
    data = json.loads(out)  # fails on anything but a single JSON document
    assert isinstance(data, dict)
    return data


def exception_line(trace: str) -> str:
    """The line of a traceback that names the exception, to keep failures short."""
    lines = [line for line in trace.splitlines() if re.match(r"^[\w.]+(Error|Exception)\b", line)]
    return (lines[-1] if lines else trace.strip().splitlines()[-1])[:500]


def fails(env: dict[str, str], *args: str, says: str, script: bool = False) -> str:
    """The command must fail cleanly: non-zero, on stderr a message that `says` what is
    wrong, no traceback."""
    done = (run_script if script or AS_SCRIPT in env else run)(env, *args)
    assert done.unexpected is None, repr(done.unexpected)
    assert done.returncode != 0, f"exit code 0; stdout: {done.stdout[:300]}"
    assert "Traceback" not in done.stderr, exception_line(done.stderr)
    assert "Traceback" not in done.stdout, done.stdout
    assert says in done.stderr, f"{args}: expected {says!r} in {done.stderr!r}"
    return done.stderr


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def email() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}@x.test"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run from an empty directory, so a stray relative path cannot touch the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def local(tmp_path: Path) -> dict[str, str]:
    """Embedded SQLite in a fresh data directory."""
    return base_env(DATA_DIR=str(tmp_path / "data"))


@pytest.fixture
def local_org(local: dict[str, str]) -> dict[str, Any]:
    return ok_json(local, "orgs", "create", "--name", "Local", "--owner-email", email())


@pytest.fixture
def shared(server: Server, tmp_path: Path) -> dict[str, str]:
    """The running test server's database and key: what the CLI makes, the API serves."""
    env = base_env(
        DATABASE_URL=server.settings.database_url,
        SECRET_KEY=server.settings.secret_key,
        DATA_DIR=str(tmp_path / "unused"),
    )
    # This process must not open a running SQLite server's database file (see
    # tests/support.py `sqlite_bytes`): on SQLite the command runs as a subprocess.
    return {**env, AS_SCRIPT: "1"} if server.backend == "sqlite" else env


def assert_org_created(data: dict[str, Any], name: str, owner_email: str) -> None:
    assert set(data) == {"organization", "environments", "user", "token", "tokenId"}
    assert set(data["organization"]) == {"id", "name"}
    assert type(data["organization"]["id"]) is int
    assert data["organization"]["name"] == name
    assert [e["environmentFlag"] for e in data["environments"]] == FLAGS
    for environment in data["environments"]:
        assert set(environment) == {"id", "name", "environmentFlag"}
        assert isinstance(environment["id"], str) and environment["id"]
    assert len({e["id"] for e in data["environments"]}) == 3
    assert set(data["user"]) == {"id", "email"}
    assert data["user"]["email"] == owner_email.lower()
    assert isinstance(data["token"], str) and data["token"]
    assert isinstance(data["tokenId"], str) and data["tokenId"]


def env_ids(created: dict[str, Any]) -> dict[str, str]:
    return {e["environmentFlag"]: e["id"] for e in created["environments"]}


# --- against the running server's database (SQLite and PostgreSQL) ----------------------


def test_orgs_create_token_works_against_the_api(server: Server, shared: dict[str, str]) -> None:
    owner = email()
    created = ok_json(shared, "orgs", "create", "--name", "From CLI", "--owner-email", owner)
    assert_org_created(created, "From CLI", owner)
    org_id = created["organization"]["id"]
    with server.client(created["token"]) as api:
        response = api.get(f"/platform/v1/organizations/{org_id}/environments")
        assert response.status_code == 200, response.text
        environments = response.json()["payload"]["environments"]
        assert environments == [
            {
                "id": e["id"],
                "name": e["name"],
                "environmentFlag": e["environmentFlag"],
                "organization": {"id": org_id},
            }
            for e in created["environments"]
        ]
        # The owner is an engineer everywhere and may delete in Production.
        prod = env_ids(created)["Production"]
        made = api.post(
            f"/platform/v1/environments/{prod}/destinations",
            json={"name": "p", "endpoint": "https://r.test/p"},
        )
        assert made.status_code == 201, made.text
        gone = api.delete(
            f"/platform/v1/destinations/{made.json()['payload']['destination']['id']}"
        )
        assert gone.status_code == 200, gone.text


def test_users_create_gives_exactly_the_given_rights(
    server: Server, shared: dict[str, str], org: Org
) -> None:
    created = ok_json(
        shared,
        "users",
        "create",
        "--org",
        str(org.id),
        "--email",
        email(),
        "--role",
        f"{org.dev}=viewer",
        "--role",
        f"{org.prod}=engineer",
    )
    assert set(created) == {"user", "token", "tokenId"}
    assert isinstance(created["user"]["id"], str) and created["user"]["id"]
    with org.client() as owner:
        made = owner.post(
            f"/platform/v1/environments/{org.prod}/destinations",
            json={"name": "p", "endpoint": "https://r.test/p"},
        )
        assert made.status_code == 201, made.text
        prod_destination = made.json()["payload"]["destination"]["id"]
    with server.client(created["token"]) as api:
        listed = api.get(f"/platform/v1/organizations/{org.id}/environments")
        assert listed.status_code == 200, listed.text
        assert [e["id"] for e in listed.json()["payload"]["environments"]] == [org.dev, org.prod]
        # Viewer in Development: reads, cannot create.
        assert api.get(f"/platform/v1/environments/{org.dev}/destinations").status_code == 200
        refused = api.post(
            f"/platform/v1/environments/{org.dev}/destinations",
            json={"name": "d", "endpoint": "http://r.test/d"},
        )
        assert refused.status_code == 403, refused.text
        # No role in Staging.
        staging = api.get(f"/platform/v1/environments/{org.staging}/destinations")
        assert staging.status_code == 404
        # Engineer in Production, but the default org role (member) may not delete there.
        made = api.post(
            f"/platform/v1/environments/{org.prod}/destinations",
            json={"name": "p2", "endpoint": "https://r.test/p2"},
        )
        assert made.status_code == 201, made.text
        assert api.delete(f"/platform/v1/destinations/{prod_destination}").status_code == 403


def test_users_create_with_admin_org_role(server: Server, shared: dict[str, str], org: Org) -> None:
    created = ok_json(
        shared,
        "users",
        "create",
        "--org",
        str(org.id),
        "--email",
        email(),
        "--org-role",
        "admin",
        "--role",
        f"{org.prod}=engineer",
    )
    with org.client() as owner:
        made = owner.post(
            f"/platform/v1/environments/{org.prod}/destinations",
            json={"name": "p", "endpoint": "https://r.test/p"},
        )
        assert made.status_code == 201, made.text
    destination_id = made.json()["payload"]["destination"]["id"]
    with server.client(created["token"]) as api:
        assert api.delete(f"/platform/v1/destinations/{destination_id}").status_code == 200


def test_users_create_without_roles_sees_no_environments(
    server: Server, shared: dict[str, str], org: Org
) -> None:
    created = ok_json(shared, "users", "create", "--org", str(org.id), "--email", email())
    with server.client(created["token"]) as api:
        listed = api.get(f"/platform/v1/organizations/{org.id}/environments")
        assert listed.status_code == 200, listed.text
        assert listed.json()["payload"]["environments"] == []
        assert api.get(f"/platform/v1/environments/{org.dev}/destinations").status_code == 404


def test_tokens_create_then_revoke(server: Server, shared: dict[str, str], org: Org) -> None:
    issued = ok_json(shared, "tokens", "create", "--user", org.owner_id)
    assert set(issued) == {"tokenId", "token"}
    environments = f"/platform/v1/organizations/{org.id}/environments"
    with server.client(issued["token"]) as api:
        assert api.get(environments).status_code == 200
        out = ok(shared, "tokens", "revoke", issued["tokenId"])
        assert not is_json(out)
        assert issued["tokenId"] in out
        refused = api.get(environments)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
    # Only that token stopped working.
    with org.client() as api:
        assert api.get(environments).status_code == 200
    # A revoked token cannot be revoked again.
    fails(
        shared,
        "tokens",
        "revoke",
        issued["tokenId"],
        says=f"no active token with id {issued['tokenId']}",
    )


def test_users_create_refuses_an_environment_of_another_organization(
    shared: dict[str, str], org: Org, other_org: Org
) -> None:
    address = email()
    message = fails(
        shared,
        "users",
        "create",
        "--org",
        str(org.id),
        "--email",
        address,
        "--role",
        f"{other_org.dev}=viewer",
        says=f"no environment {other_org.dev} in organization {org.id}",
    )
    assert message.startswith("waypost: error: ")
    # Nothing was half-made: the same email can still be used.
    ok_json(shared, "users", "create", "--org", str(org.id), "--email", address)


@pytest.mark.parametrize("org_id", ["9999999999", "99999999999999999999"])
def test_out_of_range_org_id_fails_cleanly(shared: dict[str, str], org_id: str) -> None:
    """An organization id no database column can hold is simply unknown."""
    fails(
        shared,
        "users",
        "create",
        "--org",
        org_id,
        "--email",
        email(),
        says=f"no organization with id {org_id}",
    )


NOT_AN_EMAIL = "is not an email address of at most 320 characters"
OVERLONG = {
    # users.email holds 320 characters; names are 1 to 255 characters, as in the API.
    "users create --email": (
        ["users", "create", "--org", "{org}", "--email", "a" * 400 + "@x.test"],
        NOT_AN_EMAIL,
    ),
    "orgs create --name": (
        ["orgs", "create", "--name", "n" * 400, "--owner-email", "o@x.test"],
        "the organization name must be 1 to 255 characters",
    ),
    "orgs create --owner-email": (
        ["orgs", "create", "--name", "Long", "--owner-email", "o" * 400 + "@x.test"],
        NOT_AN_EMAIL,
    ),
}


@pytest.mark.parametrize(("args", "says"), OVERLONG.values(), ids=OVERLONG)
def test_overlong_values_are_refused_cleanly(
    shared: dict[str, str], org: Org, args: list[str], says: str
) -> None:
    """The same refusal on both databases: not a traceback, not a silent acceptance."""
    fails(shared, *(a.format(org=org.id) for a in args), says=says)


# --- embedded SQLite in a fresh data directory -------------------------------------------


def test_orgs_create_json(local: dict[str, str]) -> None:
    """The installed console script, in a process of its own."""
    created = ok_json(
        local, "orgs", "create", "--name", "Acme", "--owner-email", "Boss@X.test", script=True
    )
    assert_org_created(created, "Acme", "Boss@X.test")


def test_orgs_create_text(local: dict[str, str]) -> None:
    out = ok(local, "orgs", "create", "--name", "Acme", "--owner-email", "boss@x.test")
    assert not is_json(out)
    assert "boss@x.test" in out
    for flag in FLAGS:
        assert flag in out
    assert "wp_" in out  # the token, shown once


def test_orgs_create_twice_makes_two_organizations(local: dict[str, str]) -> None:
    first = ok_json(local, "orgs", "create", "--name", "A", "--owner-email", "a@x.test")
    second = ok_json(local, "orgs", "create", "--name", "B", "--owner-email", "a@x.test")
    assert first["organization"]["id"] != second["organization"]["id"]
    assert not {e["id"] for e in first["environments"]} & {e["id"] for e in second["environments"]}


def test_users_create_json_and_text(local: dict[str, str], local_org: dict[str, Any]) -> None:
    org_id = str(local_org["organization"]["id"])
    dev = env_ids(local_org)["Development"]
    address = email()
    created = ok_json(
        local, "users", "create", "--org", org_id, "--email", address, "--role", f"{dev}=support"
    )
    assert set(created) == {"user", "token", "tokenId"}
    assert created["user"]["email"] == address
    assert created["token"] != local_org["token"]
    out = ok(local, "users", "create", "--org", org_id, "--email", email())
    assert not is_json(out)
    assert "wp_" in out


def test_tokens_create_json_and_text(local: dict[str, str], local_org: dict[str, Any]) -> None:
    user_id = local_org["user"]["id"]
    first = ok_json(local, "tokens", "create", "--user", user_id)
    second = ok_json(local, "tokens", "create", "--user", user_id)
    assert set(first) == {"tokenId", "token"}
    assert first["token"] != second["token"]
    assert first["tokenId"] != second["tokenId"]
    out = ok(local, "tokens", "create", "--user", user_id)
    assert not is_json(out)
    assert "wp_" in out
    revoked = ok(local, "tokens", "revoke", first["tokenId"])
    assert not is_json(revoked)


def test_same_email_may_join_another_organization(local: dict[str, str]) -> None:
    a = ok_json(local, "orgs", "create", "--name", "A", "--owner-email", "a@x.test")
    b = ok_json(local, "orgs", "create", "--name", "B", "--owner-email", "b@x.test")
    address = email()
    for org in (a, b):
        ok_json(
            local, "users", "create", "--org", str(org["organization"]["id"]), "--email", address
        )


ROLE_FORM = "--role takes ENV_ID=engineer|support|viewer, not "
BAD_ARGS: dict[str, tuple[list[str], str]] = {
    "unknown org": (
        ["users", "create", "--org", "999999", "--email", "u@x.test"],
        "no organization with id 999999",
    ),
    "non-numeric org": (
        ["users", "create", "--org", "abc", "--email", "u@x.test"],
        "Invalid value for '--org'",
    ),
    "unknown env in --role": (
        ["users", "create", "--org", "{org}", "--email", "u@x.test", "--role", f"{ZERO}=viewer"],
        f"no environment {ZERO} in organization {{org}}",
    ),
    "bad role name": (
        ["users", "create", "--org", "{org}", "--email", "u@x.test", "--role", "{dev}=boss"],
        ROLE_FORM + "'{dev}=boss'",
    ),
    "role without =": (
        ["users", "create", "--org", "{org}", "--email", "u@x.test", "--role", "{dev}"],
        ROLE_FORM + "'{dev}'",
    ),
    "same env twice": (
        [
            *["users", "create", "--org", "{org}", "--email", "u@x.test"],
            *["--role", "{dev}=viewer", "--role", "{dev}=engineer"],
        ],
        "--role names environment {dev} twice",
    ),
    "bad org role": (
        ["users", "create", "--org", "{org}", "--email", "u@x.test", "--org-role", "king"],
        "'king' is not one of",
    ),
    "not an email": (
        ["users", "create", "--org", "{org}", "--email", "nobody"],
        "'nobody' " + NOT_AN_EMAIL,
    ),
    "duplicate email": (
        ["users", "create", "--org", "{org}", "--email", "{owner}"],
        "{owner} is already a user of organization {org}",
    ),
    "duplicate email, other case": (
        ["users", "create", "--org", "{org}", "--email", "{OWNER}"],
        "{owner} is already a user of organization {org}",
    ),
    "unknown user for tokens create": (
        ["tokens", "create", "--user", ZERO],
        f"no user with id {ZERO}",
    ),
    "unknown token for revoke": (
        ["tokens", "revoke", ZERO],
        f"no active token with id {ZERO}",
    ),
    "empty org name": (
        ["orgs", "create", "--name", " ", "--owner-email", "a@x.test"],
        "the organization name must be 1 to 255 characters",
    ),
    "missing owner email": (
        ["orgs", "create", "--name", "A"],
        "Missing option '--owner-email'",
    ),
}


@pytest.mark.parametrize(("args", "says"), BAD_ARGS.values(), ids=BAD_ARGS)
def test_bad_arguments_fail_cleanly(
    local: dict[str, str], local_org: dict[str, Any], args: list[str], says: str
) -> None:
    owner = local_org["user"]["email"]
    values = {
        "org": str(local_org["organization"]["id"]),
        "dev": env_ids(local_org)["Development"],
        "owner": owner,
        "OWNER": owner.upper(),
    }
    fails(local, *(a.format(**values) for a in args), says=says.format(**values))


def test_duplicate_email_message(local: dict[str, str], local_org: dict[str, Any]) -> None:
    org_id = str(local_org["organization"]["id"])
    address = email()
    ok_json(local, "users", "create", "--org", org_id, "--email", address)
    message = fails(
        local,
        *["users", "create", "--org", org_id, "--email", address],
        says=f"waypost: error: {address} is already a user of organization {org_id}",
    )
    assert len(message.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (
            ["users", "create", "--org", "999999", "--email", "u@x.test"],
            "no organization with id 999999",
        ),
        (["tokens", "create", "--user", "no-such-user"], "no user with id no-such-user"),
        (["tokens", "revoke", "no-such-token"], "no active token with id no-such-token"),
    ],
)
def test_unknown_ids_are_named_in_one_line(
    local: dict[str, str], args: list[str], mentions: str
) -> None:
    message = fails(local, *args, says=mentions, script=True)
    assert message == f"waypost: error: {mentions}\n"


def test_unknown_env_and_bad_role_are_named(
    local: dict[str, str], local_org: dict[str, Any]
) -> None:
    org_id = str(local_org["organization"]["id"])
    missing = str(uuid.uuid4())
    fails(
        local,
        *["users", "create", "--org", org_id, "--email", email(), "--role", f"{missing}=viewer"],
        says=f"no environment {missing} in organization {org_id}",
    )
    dev = env_ids(local_org)["Development"]
    fails(
        local,
        *["users", "create", "--org", org_id, "--email", email(), "--role", f"{dev}=boss"],
        says=f"{ROLE_FORM}'{dev}=boss'",
    )


def test_migrate_is_idempotent(local: dict[str, str], tmp_path: Path) -> None:
    ok(local, "migrate")
    assert (tmp_path / "data" / "waypost.db").exists()
    ok(local, "migrate")
    # The database still works after the second run.
    ok_json(local, "orgs", "create", "--name", "A", "--owner-email", "a@x.test")
    ok(local, "migrate")


def test_bootstrap_once(local: dict[str, str]) -> None:
    first = ok(local, "bootstrap")
    assert "wp_" in first  # the token
    assert "curl" in first
    assert "Authorization: Bearer wp_" in first
    second = run(local, "bootstrap")
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    assert "wp_" not in second.stdout
    assert "already" in (second.stdout + second.stderr).lower()
    # Only one organization exists, so the next one is number 2.
    created = ok_json(local, "orgs", "create", "--name", "Next", "--owner-email", "n@x.test")
    assert created["organization"]["id"] == 2


def test_bootstrap_after_orgs_create_does_nothing(local: dict[str, str]) -> None:
    ok_json(local, "orgs", "create", "--name", "A", "--owner-email", "a@x.test")
    out = ok(local, "bootstrap")
    assert "wp_" not in out
    assert "already" in out.lower()


def test_unsupported_database_url(tmp_path: Path) -> None:
    env = base_env(DATA_DIR=str(tmp_path / "data"), DATABASE_URL="mysql://x/y")
    message = fails(
        env,
        "migrate",
        says="WAYPOST_DATABASE_URL must start with sqlite:// or postgresql://, not mysql://",
        script=True,
    )
    assert len(message.strip().splitlines()) == 1


def test_unreachable_postgres_fails_cleanly(tmp_path: Path) -> None:
    env = base_env(
        DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing",
        SECRET_KEY=new_secret_key(),
    )
    fails(env, "migrate", says="waypost: error: cannot reach the database: ")


# --- a fresh PostgreSQL database ---------------------------------------------------------


def test_orgs_create_on_postgres(postgres_server_url: str, tmp_path: Path) -> None:
    with scratch_postgres_database(postgres_server_url) as url:
        env = base_env(DATABASE_URL=url, SECRET_KEY=new_secret_key())
        created = ok_json(env, "orgs", "create", "--name", "PG", "--owner-email", "pg@x.test")
        assert_org_created(created, "PG", "pg@x.test")
        # The rows are in PostgreSQL: the user is found by the next command.
        issued = ok_json(env, "tokens", "create", "--user", created["user"]["id"])
        assert issued["token"] != created["token"]
        out = ok(env, "bootstrap")
        assert "already" in out.lower()
    # No embedded database was created in the working directory.
    assert not (tmp_path / "var").exists()


# --- finding and recovering access (issue: a lost bootstrap token) -----------------------


def audit_trail(server: Server, token: str, org_id: int) -> list[dict[str, Any]]:
    """The organization's audit events, newest first, read over the API."""
    with server.client(token) as api:
        response = api.get(f"/platform/v1/organizations/{org_id}/audit-events")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["payload"]["results"]
    return events


def test_orgs_create_is_recorded_in_the_audit_trail(server: Server, shared: dict[str, str]) -> None:
    owner = email()
    created = ok_json(shared, "orgs", "create", "--name", "Audited", "--owner-email", owner)
    org_id, user_id = created["organization"]["id"], created["user"]["id"]
    events = audit_trail(server, created["token"], org_id)
    assert [e["type"] for e in events] == [
        "api-token-created",
        "user-created",
        "organization-created",
    ]
    for event in events:
        assert event["route"] == "cli: waypost orgs create"
        assert event["userId"] is None  # the command line, not a user of the API
        assert event["status"] == "successful"
    token_event, user_event, org_event = events
    assert token_event["details"] == {"userId": user_id, "tokenId": created["tokenId"]}
    assert user_event["details"] == {
        "userId": user_id,
        "email": owner,
        "orgRole": "owner",
        "environmentRoles": {e["id"]: "engineer" for e in created["environments"]},
    }
    assert org_event["details"] == {"name": "Audited", "environments": created["environments"]}
    assert created["token"] not in json.dumps(events)


def test_users_create_is_recorded_in_the_audit_trail(
    server: Server, shared: dict[str, str], org: Org
) -> None:
    address = email()
    created = ok_json(
        shared,
        *["users", "create", "--org", str(org.id), "--email", address],
        *["--org-role", "admin", "--role", f"{org.dev}=support"],
    )
    events = audit_trail(server, org.owner_token, org.id)
    assert [(e["type"], e["route"]) for e in events] == [
        ("api-token-created", "cli: waypost users create"),
        ("user-created", "cli: waypost users create"),
    ]
    token_event, user_event = events
    user_id = created["user"]["id"]
    assert user_event["details"] == {
        "userId": user_id,
        "email": address,
        "orgRole": "admin",
        "environmentRoles": {org.dev: "support"},
    }
    assert token_event["details"] == {"userId": user_id, "tokenId": created["tokenId"]}
    assert created["token"] not in json.dumps(events)


def test_bootstrap_is_recorded_in_the_audit_trail(local: dict[str, str], tmp_path: Path) -> None:
    ok(local, "bootstrap")
    with sqlite3.connect(tmp_path / "data" / "waypost.db") as db:
        rows = db.execute("SELECT type, route, user_id FROM audit_events ORDER BY seq").fetchall()
    assert rows == [
        ("organization-created", "cli: waypost bootstrap", None),
        ("user-created", "cli: waypost bootstrap", None),
        ("api-token-created", "cli: waypost bootstrap", None),
    ]


def test_bootstrap_prints_the_owner_id_and_how_to_recover(local: dict[str, str]) -> None:
    first = ok(local, "bootstrap", "--owner-email", "Boss@Example.test")
    [user] = ok_json(local, "users", "list")["users"]
    assert user["email"] == "boss@example.test"
    assert f"(user id {user['id']})" in first
    assert "tokens create --user boss@example.test" in first
    again = ok(local, "bootstrap")
    assert "already" in again
    assert "waypost users list" in again
    assert "waypost tokens create --user" in again


def test_a_lost_bootstrap_token_is_replaced_by_email(
    server: Server, shared: dict[str, str]
) -> None:
    """The recovery the README describes: find the user, issue a token, use it."""
    owner = email()
    created = ok_json(shared, "orgs", "create", "--name", "Lost", "--owner-email", owner)
    org_id = created["organization"]["id"]
    issued = ok_json(shared, "tokens", "create", "--user", owner.upper(), "--name", "recovered")
    with server.client(issued["token"]) as api:
        assert api.get(f"/platform/v1/organizations/{org_id}/environments").status_code == 200
    listed = ok_json(shared, "tokens", "list", "--user", owner)["tokens"]
    assert [(t["id"], t["name"]) for t in listed] == [
        (created["tokenId"], "waypost orgs create"),
        (issued["tokenId"], "recovered"),
    ]


def test_orgs_list(local: dict[str, str]) -> None:
    assert ok_json(local, "orgs", "list") == {"organizations": []}
    assert ok(local, "orgs", "list").strip() == "no organizations"
    a = ok_json(local, "orgs", "create", "--name", "A", "--owner-email", "a@x.test")
    b = ok_json(local, "orgs", "create", "--name", "B", "--owner-email", "b@x.test")
    ok_json(local, "users", "create", "--org", str(b["organization"]["id"]), "--email", email())
    listed = ok_json(local, "orgs", "list")["organizations"]
    assert [(o["id"], o["name"], o["users"]) for o in listed] == [
        (a["organization"]["id"], "A", 1),
        (b["organization"]["id"], "B", 2),
    ]
    assert [o["environments"] for o in listed] == [a["environments"], b["environments"]]
    for org in listed:
        assert set(org) == {"id", "name", "createdAt", "users", "environments"}
    text = ok(local, "orgs", "list")
    for created in (a, b):
        for environment in created["environments"]:
            assert environment["id"] in text  # what `users create --role` needs


def test_users_list(local: dict[str, str]) -> None:
    a = ok_json(local, "orgs", "create", "--name", "A", "--owner-email", "a@x.test")
    b = ok_json(local, "orgs", "create", "--name", "B", "--owner-email", "b@x.test")
    a_id, b_id = str(a["organization"]["id"]), str(b["organization"]["id"])
    dev = env_ids(b)["Development"]
    member = ok_json(
        local, "users", "create", "--org", b_id, "--email", "m@x.test", "--role", f"{dev}=viewer"
    )
    everyone = ok_json(local, "users", "list")["users"]
    assert [(u["id"], u["email"], u["organization"]["id"], u["orgRole"]) for u in everyone] == [
        (a["user"]["id"], "a@x.test", a["organization"]["id"], "owner"),
        (b["user"]["id"], "b@x.test", b["organization"]["id"], "owner"),
        (member["user"]["id"], "m@x.test", b["organization"]["id"], "member"),
    ]
    assert everyone[2]["environmentRoles"] == [
        {"environment": {"id": dev, "name": "Development"}, "role": "viewer"}
    ]
    assert [r["role"] for r in everyone[0]["environmentRoles"]] == ["engineer"] * 3
    in_b = ok_json(local, "users", "list", "--org", b_id)["users"]
    assert [u["email"] for u in in_b] == ["b@x.test", "m@x.test"]
    assert [u["email"] for u in ok_json(local, "users", "list", "--org", a_id)["users"]] == [
        "a@x.test"
    ]
    text = ok(local, "users", "list", "--org", b_id)
    assert member["user"]["id"] in text
    assert "Development=viewer" in text
    assert "wp_" not in text
    fails(local, "users", "list", "--org", "99", says="no organization with id 99")


def test_tokens_list_never_shows_a_token(local: dict[str, str], local_org: dict[str, Any]) -> None:
    user = local_org["user"]["email"]
    second = ok_json(local, "tokens", "create", "--user", user, "--name", "deploy script")
    third = ok_json(local, "tokens", "create", "--user", user)
    ok(local, "tokens", "revoke", third["tokenId"])
    listed = ok_json(local, "tokens", "list", "--user", user)["tokens"]
    assert [(t["id"], t["name"]) for t in listed] == [
        (local_org["tokenId"], "waypost orgs create"),
        (second["tokenId"], "deploy script"),
    ]
    for token in listed:
        assert set(token) == {
            "id",
            "name",
            "createdAt",
            "lastUsedAt",
            "expiresAt",
            "revokedAt",
            "clientId",
        }
        assert token["lastUsedAt"] is None  # never used
    everything = ok_json(local, "tokens", "list", "--user", user, "--all")["tokens"]
    assert [t["id"] for t in everything] == [t["id"] for t in listed] + [third["tokenId"]]
    assert everything[-1]["revokedAt"] is not None and everything[-1]["name"] is None
    text = ok(local, "tokens", "list", "--user", user, "--all")
    for token in everything:
        assert token["id"] in text
    assert "deploy script" in text and "last used never" in text and "revoked" in text
    for shown in (json.dumps(everything), text):
        assert "wp_" not in shown
        for made in (local_org, second, third):
            assert made["token"] not in shown


def test_tokens_list_shows_last_use(server: Server, shared: dict[str, str], org: Org) -> None:
    issued = ok_json(shared, "tokens", "create", "--user", org.owner_id, "--name", "used")

    def last_used() -> str | None:
        tokens = ok_json(shared, "tokens", "list", "--user", org.owner_id)["tokens"]
        [mine] = [t for t in tokens if t["id"] == issued["tokenId"]]
        value: str | None = mine["lastUsedAt"]
        return value

    assert last_used() is None
    environments = f"/platform/v1/organizations/{org.id}/environments"
    with server.client(issued["token"]) as api:
        assert api.get(environments).status_code == 200
        first = last_used()
        assert first is not None
        created = next(
            t
            for t in ok_json(shared, "tokens", "list", "--user", org.owner_id)["tokens"]
            if t["id"] == issued["tokenId"]
        )["createdAt"]
        assert first >= created
        # Within the minute, further use writes nothing.
        assert api.get(environments).status_code == 200
        assert last_used() == first
    # A refused token notes nothing: the revoked one keeps its time.
    ok(shared, "tokens", "revoke", issued["tokenId"])
    with server.client(issued["token"]) as api:
        assert api.get(environments).status_code == 401


def test_user_may_be_named_by_email_everywhere(
    local: dict[str, str], local_org: dict[str, Any], tmp_path: Path
) -> None:
    user_id, address = local_org["user"]["id"], local_org["user"]["email"]
    shouted = address.upper()
    issued = ok_json(local, "tokens", "create", "--user", shouted)
    assert issued["tokenId"] in {
        t["id"] for t in ok_json(local, "tokens", "list", "--user", user_id)["tokens"]
    }
    keys = ok_json(local, "keys", "create", "--user", shouted, "--generate")
    for user in (address, user_id):
        listed = ok_json(local, "keys", "list", "--user", user)["keys"]
        assert [k["clientId"] for k in listed] == [keys["clientId"]]
        tokens = ok_json(local, "tokens", "list", "--user", user)["tokens"]
        assert [t["id"] for t in tokens] == [local_org["tokenId"], issued["tokenId"]]
    jwks = tmp_path / "keys.json"
    jwks.write_text(json.dumps({"keys": [PUBLIC_JWK]}))
    ok_json(local, "keys", "create", "--user", address, "--jwks", str(jwks))


# An EC P-256 public key (x and y from RFC 7515, appendix A.3).
PUBLIC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "kid": "rfc-7515",
}


def test_an_email_in_several_organizations_needs_org(local: dict[str, str]) -> None:
    address = email()
    a = ok_json(local, "orgs", "create", "--name", "A", "--owner-email", address)
    b = ok_json(local, "orgs", "create", "--name", "B", "--owner-email", address)
    a_id, b_id = a["organization"]["id"], b["organization"]["id"]
    says = (
        f"{address} is a user in organizations {a_id}, {b_id}; "
        "name one with --org ORG_ID, or give the user id"
    )
    for command in (["tokens", "create"], ["tokens", "list"], ["keys", "list"]):
        fails(local, *command, "--user", address, says=says)
    fails(local, "keys", "create", "--user", address, "--generate", says=says)
    issued = ok_json(local, "tokens", "create", "--user", address, "--org", str(b_id))
    in_b = ok_json(local, "tokens", "list", "--user", b["user"]["id"])["tokens"]
    assert issued["tokenId"] in {t["id"] for t in in_b}
    in_a = ok_json(local, "tokens", "list", "--user", address, "--org", str(a_id))["tokens"]
    assert issued["tokenId"] not in {t["id"] for t in in_a}


USER_ERRORS: dict[str, tuple[list[str], str]] = {
    "unknown email": (["--user", "nobody@x.test"], "no user with email nobody@x.test"),
    "unknown email in org": (
        ["--user", "nobody@x.test", "--org", "{org}"],
        "no user with email nobody@x.test in organization {org}",
    ),
    "id outside --org": (
        ["--user", "{user}", "--org", "{other}"],
        "user {user} is not in organization {other}",
    ),
    "unknown org": (["--user", "{user}", "--org", "999"], "no organization with id 999"),
    "unknown id": (["--user", ZERO], f"no user with id {ZERO}"),
}


@pytest.mark.parametrize(("args", "says"), USER_ERRORS.values(), ids=USER_ERRORS)
@pytest.mark.parametrize("command", ["tokens create", "tokens list", "keys list"])
def test_a_user_that_is_not_found_is_named(
    local: dict[str, str], command: str, args: list[str], says: str
) -> None:
    mine = ok_json(local, "orgs", "create", "--name", "A", "--owner-email", email())
    other = ok_json(local, "orgs", "create", "--name", "B", "--owner-email", email())
    values = {
        "org": mine["organization"]["id"],
        "other": other["organization"]["id"],
        "user": mine["user"]["id"],
    }
    fails(
        local,
        *command.split(),
        *(a.format(**values) for a in args),
        says=says.format(**values),
    )


def test_token_names_are_checked(local: dict[str, str], local_org: dict[str, Any]) -> None:
    user = local_org["user"]["id"]
    for bad in (" ", "x" * 256, "two\nlines"):
        fails(
            local,
            *["tokens", "create", "--user", user, "--name", bad],
            says="a token name is 1 to 255 printable characters on one line",
        )
    named = ok_json(local, "tokens", "create", "--user", user, "--name", "  padded  ")
    listed = ok_json(local, "tokens", "list", "--user", user)["tokens"]
    assert next(t["name"] for t in listed if t["id"] == named["tokenId"]) == "padded"


# --- the command itself: version, completion, help ---------------------------------------


def test_version(local: dict[str, str]) -> None:
    assert ok(local, "--version") == f"waypost {waypost.__version__}\n"


def test_shell_completion_is_typers_own(local: dict[str, str]) -> None:
    """`--install-completion` and `--show-completion` exist, and the completion they
    install answers from the installed script."""
    help_text = ok(local, "--help")
    assert "--install-completion" in help_text and "--show-completion" in help_text
    script = ok(local, "--show-completion", "bash")
    assert "_WAYPOST_COMPLETE=complete_bash" in script
    env = {**local, "_WAYPOST_COMPLETE": "complete_bash", "COMP_WORDS": "waypost tokens l"}
    done = subprocess.run(
        [WAYPOST], capture_output=True, text=True, env={**env, "COMP_CWORD": "2"}, timeout=60
    )
    assert done.stdout.split() == ["list"], done.stderr


def every_command() -> list[tuple[list[str], Any]]:
    """(path, click command) for the root, each group and each command."""
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], typer.main.get_command(cli))
    return found


COMMANDS = every_command()
# A type where a name should be (`--help <bool>`, `--role <list[str]>`, `{token_id}`).
TYPE_NOISE = re.compile(
    r"<(bool|str|int|float|path|file|list\[[^\]]*\]|[a-z ]+ range)>|\{[a-z_]+\}"
)


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "waypost" for p, _ in COMMANDS]
)
def test_help_names_every_option_without_type_noise(
    local: dict[str, str], path: list[str], command: Any
) -> None:
    text = ok(local, *path, "--help")
    assert not TYPE_NOISE.search(text), TYPE_NOISE.findall(text)
    for param in command.params:
        if param.param_type_name == "option":
            assert param.help, f"waypost {' '.join(path)} {param.opts[0]} has no help text"
            assert param.opts[0] in text
        else:
            assert param.help, f"waypost {' '.join(path)} {param.name} has no help text"
            assert param.name.upper() in text


def test_secrets_reencrypt_is_recorded_in_every_organization(tmp_path: Path) -> None:
    old, new = new_secret_key(), new_secret_key()
    data = tmp_path / "data"
    server = start_server("sqlite", f"sqlite:///{data / 'waypost.db'}", data, secret_key=old)
    try:
        with_secret, without = server.new_org("A"), server.new_org("B")
        with with_secret.client() as api:
            made = api.post(
                f"/platform/v1/environments/{with_secret.dev}/destinations",
                json={"name": "d", "endpoint": "https://r.test/", "verificationToken": "vt-1"},
            )
            assert made.status_code == 201, made.text
    finally:
        server.stop()
    env = base_env(DATA_DIR=str(data), SECRET_KEY=f"{new},{old}")
    assert ok_json(env, "secrets", "reencrypt") == {"reencrypted": 1}
    assert ok_json(env, "secrets", "reencrypt") == {"reencrypted": 0}  # changes nothing
    with sqlite3.connect(data / "waypost.db") as db:
        rows = db.execute(
            "SELECT organization_id, type, route, user_id, details FROM audit_events"
            " WHERE type = 'secrets-reencrypted' ORDER BY seq"
        ).fetchall()
    route = "cli: waypost secrets reencrypt"
    assert rows == [
        (with_secret.id, "secrets-reencrypted", route, None, "{}"),
        (without.id, "secrets-reencrypted", route, None, "{}"),
    ]


# --- make serve --------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def make_serve_plan(*variables: str, **environment: str) -> list[str]:
    """The commands `make serve` would run (a dry run; the installed venv counts as done)."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "serve", *variables],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "waypost " in line]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_serve_takes_port_and_host() -> None:
    assert make_serve_plan() == [
        ".venv/bin/waypost bootstrap --base-url http://127.0.0.1:8000",
        ".venv/bin/waypost serve --host 127.0.0.1 --port 8000",
    ]
    assert make_serve_plan("PORT=9123", "HOST=0.0.0.0") == [
        # The printed example reaches a wildcard address on loopback.
        ".venv/bin/waypost bootstrap --base-url http://127.0.0.1:9123",
        ".venv/bin/waypost serve --host 0.0.0.0 --port 9123",
    ]
    assert make_serve_plan("HOST=::1")[0].endswith("--base-url http://[::1]:8000")
    # csh exports HOST as the machine's name: only the command line may set it.
    assert make_serve_plan(HOST="example.org", PORT="9124") == [
        ".venv/bin/waypost bootstrap --base-url http://127.0.0.1:9124",
        ".venv/bin/waypost serve --host 127.0.0.1 --port 9124",
    ]
