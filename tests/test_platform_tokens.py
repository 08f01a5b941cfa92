"""Platform tokens, the Redox way: public keys registered with `waypost keys`, and
POST /v2/auth/token exchanging a signed JWT (a client assertion) for a five-minute bearer
token that carries the user's roles.

Keys are registered through the console script, run as a subprocess against the running
test server's database, so every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms
from typer.testing import CliRunner

from tests.access_support import (
    API,
    User,
    assert_problem,
    audit_events,
    env_destinations,
    make_user,
    org_roles_url,
    settle_after_server_error,
)
from tests.support import Org, Server
from waypost.auth import service as auth_service
from waypost.auth.tables import api_tokens
from waypost.cli import cli
from waypost.crypto import hash_api_token
from waypost.db import Database

WAYPOST = str(Path(sys.executable).with_name("waypost"))
TOKEN_PATH = "/v2/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NOT_FOUND = "Public key not found, check client_id, kid and Redox dashboard settings"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- keys and the command line --------------------------------------------------------------


def new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_ec(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve)


def public_jwk(key: PrivateKey, kid: str, **extra: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", **extra)
    return jwk


def private_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key))
    jwk["kid"] = kid
    return jwk


def cli_env(server: Server, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    env.update(
        WAYPOST_DATABASE_URL=server.settings.database_url,
        WAYPOST_SECRET_KEY=server.settings.secret_key,
        WAYPOST_DATA_DIR=str(tmp_path / "unused"),
    )
    return env


_IN_PROCESS = threading.Lock()  # CliRunner swaps this process's stdio and environment


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command against the test server's database. On PostgreSQL it runs in this
    process (typer's CliRunner: no interpreter start-up); on SQLite in a process of its
    own, since this process must not open the running server's database file (see
    tests/support.py `sqlite_bytes`)."""
    if not env["WAYPOST_DATABASE_URL"].startswith("postgresql"):
        return subprocess.run(
            [WAYPOST, *args], capture_output=True, text=True, env=env, timeout=60, cwd=cwd
        )
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("WAYPOST_")}
    given = {k: v for k, v in env.items() if k.startswith("WAYPOST_")}
    with _IN_PROCESS:
        result = CliRunner().invoke(cli, list(args), env={**unset, **given}, prog_name="waypost")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


def cli_ok(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = run_cli(env, cwd, *args)
    assert done.returncode == 0, f"{args}: rc={done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def cli_json(env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    data = json.loads(cli_ok(env, cwd, *args, "--json"))
    assert isinstance(data, dict)
    return data


def cli_fails(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Non-zero, exactly one line on stderr, no traceback anywhere."""
    done = run_cli(env, cwd, *args)
    assert done.returncode != 0, f"{args}: exit code 0; stdout: {done.stdout[:300]}"
    assert "Traceback" not in done.stderr, done.stderr[-800:]
    assert "Traceback" not in done.stdout, done.stdout[-800:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def write_jwks(directory: Path, keys: list[dict[str, Any]]) -> Path:
    path = directory / f"jwks-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({"keys": keys}))
    return path


# --- assertions -----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jwt(
    header: dict[str, Any],
    claims: Any,
    key: PrivateKey | None = None,
    alg: str | None = None,
) -> str:
    """A JWT put together by hand, for headers and claims PyJWT refuses to write; signed
    with `key` and `alg` when given, else with a dummy signature."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"sig"
    if key is not None:
        signature = get_default_algorithms()[alg or header["alg"]].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


@dataclass
class Signer:
    kid: str
    key: PrivateKey
    alg: str


@dataclass
class Client:
    """A registered key set: its client id, its user and the keys that can sign."""

    server: Server
    org: Org
    user: User
    client_id: str
    signers: dict[str, Signer] = field(default_factory=dict)

    @property
    def token_url(self) -> str:
        return f"{self.server.base_url}{TOKEN_PATH}"

    def claims(self, **overrides: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def assertion(
        self,
        signer: str = "es384",
        *,
        key: Any = None,
        alg: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        chosen = self.signers[signer]
        header: dict[str, Any] = {"kid": chosen.kid}
        header.update(headers or {})
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(
            self.claims(**claims),
            chosen.key if key is None else key,
            algorithm=alg or chosen.alg,
            headers=header,
        )


def token_request(
    server: Server, assertion: str | None, **form_overrides: str | None
) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    form.update(form_overrides)
    data = {k: v for k, v in form.items() if v is not None}
    with server.client() as api:
        return api.post(TOKEN_PATH, data=data)


def access_token(client: Client, signer: str = "es384") -> str:
    response = token_request(client.server, client.assertion(signer))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def assert_token_error(
    response: httpx.Response, statuses: tuple[int, ...], description: str | None = None
) -> dict[str, Any]:
    """OAuth's error shape, never problem+json and never a 500."""
    settle_after_server_error(response)
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description", "error_uri"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert isinstance(body["error_uri"], str)
    if description is not None:
        assert body["error_description"] == description
    return body


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_keys() -> dict[str, PrivateKey]:
    return {
        "rsa": new_rsa(),
        "rsa384": new_rsa(),
        "es256": new_ec(ec.SECP256R1()),
        "es384": new_ec(ec.SECP384R1()),
        "stranger_rsa": new_rsa(),
        "stranger_es384": new_ec(ec.SECP384R1()),
    }


def register(
    server: Server, directory: Path, org: Org, user: User, keys: dict[str, tuple[PrivateKey, str]]
) -> Client:
    """Registers `keys` (name -> (private key, alg)) for `user` through the CLI."""
    kids = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in keys}
    jwks = [public_jwk(key, kids[name]) for name, (key, _alg) in keys.items()]
    path = write_jwks(directory, jwks)
    created = cli_json(
        cli_env(server, directory),
        directory,
        "keys",
        "create",
        "--user",
        user.id,
        "--jwks",
        str(path),
    )
    assert set(created) == {"clientId", "kids"}, created
    assert created["kids"] == [jwk["kid"] for jwk in jwks]
    client_id: str = created["clientId"]
    assert str(uuid.UUID(client_id)) == client_id
    signers = {name: Signer(kids[name], key, alg) for name, (key, alg) in keys.items()}
    return Client(server, org, user, client_id, signers)


@pytest.fixture(scope="module")
def client(
    server: Server,
    private_keys: dict[str, PrivateKey],
    tmp_path_factory: pytest.TempPathFactory,
) -> Client:
    """An admin, engineer in Development and viewer in Production, with four keys."""
    org = server.new_org("Keys")
    user = make_user(org, "admin", Development="engineer", Production="viewer")
    keys: dict[str, tuple[PrivateKey, str]] = {
        "rs256": (private_keys["rsa"], "RS256"),
        "rs384": (private_keys["rsa384"], "RS384"),
        "es256": (private_keys["es256"], "ES256"),
        "es384": (private_keys["es384"], "ES384"),
    }
    return register(server, tmp_path_factory.mktemp("jwks"), org, user, keys)


@pytest.fixture
def own_client(server: Server, org: Org, tmp_path: Path) -> Client:
    """A key set of its own (to revoke), for a member engineer in Development."""
    user = make_user(org, "member", Development="engineer")
    return register(server, tmp_path, org, user, {"es384": (new_ec(ec.SECP384R1()), "ES384")})


# --- the exchange ---------------------------------------------------------------------------


@pytest.mark.parametrize("signer", ["rs256", "rs384", "es256", "es384"])
def test_each_algorithm_earns_a_token(client: Client, signer: str) -> None:
    response = token_request(client.server, client.assertion(signer))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 20
    with client.server.client(body["access_token"]) as api:
        listed = api.get(env_destinations(client.org.dev))
        assert listed.status_code == 200, listed.text


def test_rsa_key_signs_with_rs384_too(client: Client) -> None:
    response = token_request(client.server, client.assertion("rs256", alg="RS384"))
    assert response.status_code == 200, response.text


def test_each_token_is_new(client: Client) -> None:
    tokens = {access_token(client) for _ in range(3)}
    assert len(tokens) == 3


def test_the_token_carries_the_users_roles(client: Client) -> None:
    org = client.org
    token = access_token(client, "rs256")
    new = {"name": "by platform token", "endpoint": "https://receiver.test/in"}
    with client.server.client(token) as api:
        created = api.post(env_destinations(org.dev), json=new)
        assert created.status_code == 201, created.text
        destination_id = created.json()["payload"]["destination"]["id"]
        renamed = api.patch(f"{API}/destinations/{destination_id}", json={"name": "renamed"})
        assert renamed.status_code == 200, renamed.text
        # Viewer in Production: reads, but may not write.
        assert api.get(env_destinations(org.prod)).status_code == 200
        assert_problem(api.post(env_destinations(org.prod), json=new), 403)
        # No role in Staging: invisible.
        assert_problem(api.get(env_destinations(org.staging)), 404)
        environments = api.get(f"{API}/organizations/{org.id}/environments")
        assert environments.status_code == 200
        assert [e["id"] for e in environments.json()["payload"]["environments"]] == [
            org.dev,
            org.prod,
        ]
        # An admin lists organization roles and reads the audit trail, but changes no
        # organization role.
        assert api.get(org_roles_url(org.id)).status_code == 200
        assert api.get(f"{API}/organizations/{org.id}/audit-events").status_code == 200
        change = {"role": {"name": "owner"}, "user": {"id": client.user.id}}
        assert_problem(api.put(org_roles_url(org.id), json=change), 403)
        # Another organization stays invisible.
        other = client.server.new_org("Elsewhere")
        assert_problem(api.get(env_destinations(other.dev)), 404)
        assert api.delete(f"{API}/destinations/{destination_id}").status_code == 200


def test_the_token_follows_role_changes(own_client: Client) -> None:
    org = own_client.org
    token = access_token(own_client)
    with org.server.client(token) as api:
        assert api.get(env_destinations(org.dev)).status_code == 200
        removal = {"user": {"id": own_client.user.id}}
        with org.client() as owner:
            removed = owner.request(
                "DELETE", f"{API}/environments/{org.dev}/role-assignment", json=removal
            )
            assert removed.status_code == 200, removed.text
        assert_problem(api.get(env_destinations(org.dev)), 404)


def test_an_expired_platform_token_is_refused(own_client: Client) -> None:
    token = access_token(own_client)
    with own_client.server.client(token) as api:
        assert api.get(env_destinations(own_client.org.dev)).status_code == 200

        async def expire(db: Database) -> None:
            async with db.write() as conn:
                await conn.execute(
                    api_tokens.update()
                    .where(api_tokens.c.token_hash == hash_api_token(token))
                    .values(expires_at="2000-01-01T00:00:00.000000Z")
                )

        own_client.server.run(expire)
        response = api.get(env_destinations(own_client.org.dev))
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_token_lasts_five_minutes(own_client: Client) -> None:
    before = time.time()
    token = access_token(own_client)
    after = time.time()

    async def expiry(db: Database) -> Any:
        async with db.read() as conn:
            return await conn.scalar(
                sa.select(api_tokens.c.expires_at).where(
                    api_tokens.c.token_hash == hash_api_token(token)
                )
            )

    stored = own_client.server.run(expiry)
    from datetime import datetime

    expires = datetime.fromisoformat(stored.replace("Z", "+00:00")).timestamp()
    assert before + 299 <= expires <= after + 301


# --- the form, in Redox's documented order --------------------------------------------------


def test_json_body_is_refused(client: Client) -> None:
    with client.server.client() as api:
        response = api.post(
            TOKEN_PATH,
            json={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client.assertion(),
            },
        )
    assert_token_error(response, (400,), "x-www-form-urlencoded content-type required")


def test_no_content_type_is_refused(client: Client) -> None:
    body = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}"
    with client.server.client() as api:
        response = api.post(TOKEN_PATH, content=body.encode())
    assert_token_error(response, (400,), "x-www-form-urlencoded content-type required")


def test_content_type_with_charset_is_accepted(client: Client) -> None:
    form = httpx.QueryParams(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client.assertion(),
        }
    )
    with client.server.client() as api:
        response = api.post(
            TOKEN_PATH,
            content=str(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
    assert response.status_code == 200, response.text


FORM_ERRORS: dict[str, tuple[dict[str, str | None], str]] = {
    "no grant_type": ({"grant_type": None}, "Missing grant_type parameter"),
    "other grant_type": (
        {"grant_type": "authorization_code"},
        "The grant_type parameter should equal 'client_credentials'",
    ),
    "other grant_type, nothing else": (
        {"grant_type": "password", "client_assertion_type": None, "client_assertion": None},
        "The grant_type parameter should equal 'client_credentials'",
    ),
    "no assertion type": ({"client_assertion_type": None}, "Missing client assertion type"),
    "no assertion type nor assertion": (
        {"client_assertion_type": None, "client_assertion": None},
        "Missing client assertion type",
    ),
    "other assertion type": (
        {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"},
        "Invalid client assertion type",
    ),
    "no assertion": ({"client_assertion": None}, "Missing client assertion"),
}


@pytest.mark.parametrize("case", FORM_ERRORS.values(), ids=FORM_ERRORS)
@pytest.mark.backend_free
def test_form_errors(client: Client, case: tuple[dict[str, str | None], str]) -> None:
    overrides, description = case
    response = token_request(client.server, client.assertion(), **overrides)
    assert_token_error(response, (400,), description)


def test_empty_form_body(client: Client) -> None:
    with client.server.client() as api:
        response = api.post(
            TOKEN_PATH,
            content=b"",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert_token_error(response, (400,), "Missing grant_type parameter")


def test_token_route_is_not_under_platform(client: Client) -> None:
    with client.server.client() as api:
        response = api.post(
            f"/platform{TOKEN_PATH}",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client.assertion(),
            },
        )
    assert response.status_code in (404, 405)


# --- finding the key ------------------------------------------------------------------------


def test_kid_is_required(client: Client) -> None:
    assertion = client.assertion(headers={"kid": None})
    assert "kid" not in jwt.get_unverified_header(assertion)
    response = token_request(client.server, assertion)
    assert_token_error(response, (400,), "JWT header kid property is required")


def test_empty_kid_is_refused(client: Client) -> None:
    response = token_request(client.server, client.assertion(headers={"kid": ""}))
    assert_token_error(response, (400,), "JWT header kid property is required")


@pytest.mark.parametrize(
    "kid", [123, None, ["a"], {"k": 1}], ids=["number", "null", "list", "object"]
)
def test_kid_that_is_not_a_string_is_refused(client: Client, kid: Any) -> None:
    signer = client.signers["es384"]
    assertion = raw_jwt({"alg": "ES384", "typ": "JWT", "kid": kid}, client.claims(), signer.key)
    response = token_request(client.server, assertion)
    assert_token_error(response, (400, 401))


def test_unknown_kid(client: Client) -> None:
    response = token_request(client.server, client.assertion(headers={"kid": "no-such-kid"}))
    assert_token_error(response, (401,), NOT_FOUND)


@pytest.mark.parametrize("iss", ["unknown uuid", "not a uuid", "missing"])
def test_unknown_client_id(client: Client, iss: str) -> None:
    value: Any = {"unknown uuid": str(uuid.uuid4()), "not a uuid": "my-client", "missing": None}[
        iss
    ]
    response = token_request(client.server, client.assertion(iss=value, sub=value))
    assert_token_error(response, (401,), NOT_FOUND)


@pytest.mark.parametrize("iss", [42, ["a"], {"id": "x"}], ids=["number", "list", "object"])
def test_client_id_that_is_not_a_string_is_refused(client: Client, iss: Any) -> None:
    signer = client.signers["es384"]
    claims = client.claims(iss=iss, sub=iss)
    assertion = raw_jwt({"alg": "ES384", "typ": "JWT", "kid": signer.kid}, claims, signer.key)
    assert_token_error(token_request(client.server, assertion), (400, 401))


def test_a_kid_of_another_client_is_not_found(client: Client, own_client: Client) -> None:
    """The kid must belong to the client the assertion names."""
    theirs = own_client.signers["es384"]
    assertion = client.assertion(key=theirs.key, headers={"kid": theirs.kid})
    response = token_request(client.server, assertion)
    assert_token_error(response, (401,), NOT_FOUND)


# --- claims and signatures ------------------------------------------------------------------


def test_replay_is_refused(client: Client) -> None:
    assertion = client.assertion("es256")
    first = token_request(client.server, assertion)
    assert first.status_code == 200, first.text
    again = token_request(client.server, assertion)
    assert_token_error(again, (401,))
    # The same jti in a new assertion is a replay too.
    jti = jwt.decode(assertion, options={"verify_signature": False})["jti"]
    assert_token_error(token_request(client.server, client.assertion("rs256", jti=jti)), (401,))


def test_concurrent_replays_earn_one_token(client: Client) -> None:
    assertion = client.assertion("es384")
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt() -> None:
        response = token_request(client.server, assertion)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401, 401, 401, 401, 401]


CLAIM_CASES: dict[str, tuple[Callable[[Client], dict[str, Any]], int]] = {
    # The window is five minutes back and nothing ahead, each widened by the 10 s skew.
    # Float times keep the edges sharp: the request takes far less than the 1 s margin.
    "iat 6 minutes old": (lambda c: {"iat": int(time.time()) - 360}, 401),
    "iat 5 minutes and 11 s old": (lambda c: {"iat": time.time() - 311}, 401),
    "iat 5 minutes and 9 s old (within skew)": (lambda c: {"iat": time.time() - 309}, 200),
    "iat a minute ahead": (lambda c: {"iat": int(time.time()) + 60}, 401),
    "iat 11 s ahead": (lambda c: {"iat": time.time() + 11}, 401),
    "iat 9 s ahead (within skew)": (lambda c: {"iat": time.time() + 9}, 200),
    "iat fractional": (lambda c: {"iat": time.time() - 1.5}, 200),
    "no iat": (lambda c: {"iat": None}, 401),
    "iat as text": (lambda c: {"iat": str(int(time.time()))}, 401),
    "wrong aud": (lambda c: {"aud": "https://api.redoxengine.com/v2/auth/token"}, 401),
    "aud without path": (lambda c: {"aud": c.server.base_url}, 401),
    "no aud": (lambda c: {"aud": None}, 401),
    "sub differs from iss": (lambda c: {"sub": str(uuid.uuid4())}, 401),
    "no sub": (lambda c: {"sub": None}, 401),
    "no jti": (lambda c: {"jti": None}, 401),
    "empty jti": (lambda c: {"jti": ""}, 401),
    "numeric jti": (lambda c: {"jti": 12345}, 401),
    "expired exp": (lambda c: {"exp": int(time.time()) - 60}, 401),
    # PyJWT reads exp and nbf as whole seconds (int()), so these edges are rounded the way
    # that keeps each 1 s margin whole: up for "9 s ago", down for "11 s ago".
    "exp 11 s ago": (lambda c: {"exp": math.floor(time.time()) - 11}, 401),
    "exp 9 s ago (within skew)": (lambda c: {"exp": math.ceil(time.time()) - 9}, 200),
    "future exp": (lambda c: {"exp": int(time.time()) + 300}, 200),
    "nbf ahead": (lambda c: {"nbf": int(time.time()) + 120}, 401),
    "nbf 11 s ahead": (lambda c: {"nbf": math.ceil(time.time()) + 11}, 401),
    "nbf 9 s ahead (within skew)": (lambda c: {"nbf": math.floor(time.time()) + 9}, 200),
}


@pytest.mark.parametrize("case", CLAIM_CASES.values(), ids=CLAIM_CASES)
def test_claims(client: Client, case: tuple[Callable[[Client], dict[str, Any]], int]) -> None:
    make_claims, expected = case
    # The edges are 1 s from the rule; a request slower than half that (a loaded machine)
    # could land on the other side, so such a request is made again with fresh claims.
    for _ in range(5):
        started = time.monotonic()
        response = token_request(client.server, client.assertion("es384", **make_claims(client)))
        if time.monotonic() - started < 0.5:
            break
    if expected == 200:
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "Bearer"
    else:
        assert_token_error(response, (expected,))


@pytest.mark.parametrize("iat", [1e20, -1e20, 2**63], ids=["far future", "far past", "huge int"])
def test_absurd_iat_is_refused_without_a_500(client: Client, iat: float) -> None:
    response = token_request(client.server, client.assertion("es384", iat=iat))
    assert_token_error(response, (400, 401))


def test_signature_by_another_key_is_refused(
    client: Client, private_keys: dict[str, PrivateKey]
) -> None:
    for signer, stranger in (("es384", "stranger_es384"), ("rs256", "stranger_rsa")):
        assertion = client.assertion(signer, key=private_keys[stranger])
        assert_token_error(token_request(client.server, assertion), (401,))


def test_tampered_claims_are_refused(client: Client) -> None:
    header, _claims, signature = client.assertion("rs256").split(".")
    other = b64(json.dumps(client.claims()).encode())
    response = token_request(client.server, f"{header}.{other}.{signature}")
    assert_token_error(response, (401,))


def test_hs256_is_refused(client: Client) -> None:
    assertion = jwt.encode(
        client.claims(),
        "a shared secret of thirty-two bytes or more",
        algorithm="HS256",
        headers={"kid": client.signers["rs256"].kid},
    )
    assert_token_error(token_request(client.server, assertion), (400, 401))


def test_hs256_keyed_with_the_public_jwk_is_refused(client: Client) -> None:
    """The classic algorithm confusion: an HMAC keyed with the registered public key."""
    import hashlib
    import hmac

    signer = client.signers["es384"]
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    claims = b64(json.dumps(client.claims()).encode())
    secret = json.dumps(public_jwk(signer.key, signer.kid)).encode()
    mac = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    response = token_request(client.server, f"{header}.{claims}.{b64(mac)}")
    assert_token_error(response, (400, 401))


def test_alg_none_is_refused(client: Client) -> None:
    unsigned = raw_jwt(
        {"alg": "none", "typ": "JWT", "kid": client.signers["es384"].kid}, client.claims()
    )
    assertion = unsigned.rsplit(".", 1)[0] + "."
    assert_token_error(token_request(client.server, assertion), (400, 401))


def test_missing_alg_is_refused(client: Client) -> None:
    assertion = raw_jwt({"typ": "JWT", "kid": client.signers["es384"].kid}, client.claims())
    assert_token_error(token_request(client.server, assertion), (400, 401))


def signed_jwt(header: dict[str, Any], claims: dict[str, Any], key: PrivateKey, alg: str) -> str:
    """A JWT validly signed by `key` under `alg`, even where PyJWT would refuse to write
    one (an EC key signing with a hash its curve is not paired with)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
        der = key.sign(signing_input.encode(), ec.ECDSA(digest[alg[2:]]))
        r, s = decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        signature = get_default_algorithms()[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


def assert_alg_refused(response: httpx.Response, allowed: str) -> None:
    """Refused by the algorithm rule itself, which names what the key may use."""
    body = assert_token_error(response, (401,))
    assert body["error_description"] == f"alg must be one of {allowed} for this key", body


@pytest.mark.parametrize(
    ("signer", "alg", "allowed"),
    [
        ("rs256", "PS256", "RS256, RS384"),  # RSA-PSS is not one of Redox's algorithms
        ("rs256", "RS512", "RS256, RS384"),
        ("es384", "ES256", "ES384"),  # a P-384 key signing with SHA-256
        ("es256", "ES384", "ES256"),  # a P-256 key signing with SHA-384
        ("es256", "ES512", "ES256"),
    ],
)
def test_alg_not_matching_the_key_is_refused(
    client: Client, signer: str, alg: str, allowed: str
) -> None:
    """Each assertion is signed by the very key its kid names, so the signature is good:
    only the rule "a key signs with its own algorithms" can refuse it."""
    chosen = client.signers[signer]
    header = {"alg": alg, "typ": "JWT", "kid": chosen.kid}
    assertion = signed_jwt(header, client.claims(), chosen.key, alg)
    assert_alg_refused(token_request(client.server, assertion), allowed)


@pytest.mark.parametrize(
    ("signer", "alg", "key_name"),
    [
        ("es256", "RS256", "rsa"),  # an RSA signature for an EC key's kid
        ("rs256", "ES256", "es256"),  # an EC signature for an RSA key's kid
    ],
)
def test_a_signature_of_another_key_type_is_refused(
    client: Client,
    private_keys: dict[str, PrivateKey],
    signer: str,
    alg: str,
    key_name: str,
) -> None:
    assertion = client.assertion(signer, key=private_keys[key_name], alg=alg)
    allowed = "ES256" if signer == "es256" else "RS256, RS384"
    assert_alg_refused(token_request(client.server, assertion), allowed)


def test_alg_named_by_the_jwk_is_enforced(
    server: Server, org: Org, tmp_path: Path, private_keys: dict[str, PrivateKey]
) -> None:
    """A JWK with "alg": "RS384" accepts RS384 signatures only."""
    user = make_user(org, "member", Development="viewer")
    kid = f"pinned-{uuid.uuid4().hex[:6]}"
    path = write_jwks(tmp_path, [public_jwk(private_keys["rsa"], kid, alg="RS384")])
    created = cli_json(
        cli_env(server, tmp_path),
        tmp_path,
        "keys",
        "create",
        "--user",
        user.id,
        "--jwks",
        str(path),
    )
    pinned = Client(
        server, org, user, created["clientId"], {"rsa": Signer(kid, private_keys["rsa"], "RS384")}
    )
    assert token_request(server, pinned.assertion("rsa")).status_code == 200
    assert_alg_refused(token_request(server, pinned.assertion("rsa", alg="RS256")), "RS384")


@pytest.mark.parametrize(
    "assertion",
    ["not-a-jwt", "a.b.c", "a.b", "....", "eyJhbGciOiJFUzM4NCJ9.bm90IGpzb24.c2ln"],
    ids=["word", "three parts", "two parts", "dots", "claims not json"],
)
@pytest.mark.backend_free
def test_malformed_assertion_is_refused(client: Client, assertion: str) -> None:
    assert_token_error(token_request(client.server, assertion), (400, 401))


@pytest.mark.parametrize(
    "crit", [["exp"], [], "b64", [1]], ids=["unsupported", "empty", "string", "number"]
)
def test_crit_header_is_refused_without_a_500(client: Client, crit: Any) -> None:
    signer = client.signers["es384"]
    header = {"alg": "ES384", "kid": signer.kid, "crit": crit}
    assertion = raw_jwt(header, client.claims(), signer.key)
    assert_token_error(token_request(client.server, assertion), (400, 401))


def test_claims_that_are_not_an_object_are_refused(client: Client) -> None:
    signer = client.signers["es384"]
    for claims in ([1, 2], "text", 7, None):
        assertion = raw_jwt({"alg": "ES384", "kid": signer.kid}, claims, signer.key)
        assert_token_error(token_request(client.server, assertion), (400, 401))


# --- the command line -----------------------------------------------------------------------


def test_keys_create_list_revoke(
    server: Server, org: Org, tmp_path: Path, private_keys: dict[str, PrivateKey]
) -> None:
    env = cli_env(server, tmp_path)
    user = make_user(org, "member", Development="viewer")
    first = register(server, tmp_path, org, user, {"es256": (private_keys["es256"], "ES256")})
    second = register(
        server,
        tmp_path,
        org,
        user,
        {"a": (private_keys["rsa"], "RS256"), "b": (private_keys["es384"], "ES384")},
    )
    listed = cli_json(env, tmp_path, "keys", "list", "--user", user.id)["keys"]
    assert [k["clientId"] for k in listed] == [first.client_id, second.client_id]
    assert listed[0]["kids"] == [first.signers["es256"].kid]
    assert sorted(listed[1]["kids"]) == sorted(s.kid for s in second.signers.values())
    for entry in listed:
        assert entry["revokedAt"] is None
        assert isinstance(entry["createdAt"], str)

    token = access_token(first, "es256")
    other_token = access_token(second, "b")
    with server.client(token) as api, server.client(other_token) as other:
        assert api.get(env_destinations(org.dev)).status_code == 200
        out = cli_ok(env, tmp_path, "keys", "revoke", first.client_id)
        assert first.client_id in out
        # The platform token the key set issued stops working on the next request...
        response = api.get(env_destinations(org.dev))
        assert_problem(response, 401)
        # ... and the key set earns no new one.
        assert_token_error(token_request(server, first.assertion("es256")), (401,), NOT_FOUND)
        # The other key set is untouched.
        assert other.get(env_destinations(org.dev)).status_code == 200
        assert token_request(server, second.assertion("a")).status_code == 200
    listed = cli_json(env, tmp_path, "keys", "list", "--user", user.id)["keys"]
    assert listed[0]["revokedAt"] is not None
    assert listed[1]["revokedAt"] is None
    text = cli_ok(env, tmp_path, "keys", "list", "--user", user.id)
    assert first.client_id in text and second.client_id in text
    assert "revoked" in text.splitlines()[0] and "revoked" not in text.splitlines()[1]
    # Revoking again, or an unknown key set, fails cleanly.
    fails_in_parallel(
        env,
        tmp_path,
        {
            "again": ["keys", "revoke", first.client_id],
            "unknown": ["keys", "revoke", str(uuid.uuid4())],
            "malformed": ["keys", "revoke", "not-a-client-id"],
        },
    )


def test_keys_generate(server: Server, org: Org, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    env = cli_env(server, tmp_path)
    user = make_user(org, "member", Development="engineer")
    created = cli_json(env, tmp_path, "keys", "create", "--user", user.id, "--generate")
    assert set(created) == {"clientId", "kids", "privateKey"}
    assert len(created["kids"]) == 1
    pem: str = created["privateKey"]
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    key = load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    generated = Client(
        server, org, user, created["clientId"], {"gen": Signer(created["kids"][0], key, "ES384")}
    )
    token = access_token(generated, "gen")
    with server.client(token) as api:
        created_dest = api.post(
            env_destinations(org.dev), json={"name": "gen", "endpoint": "http://receiver.test/"}
        )
        assert created_dest.status_code == 201, created_dest.text
    # The private key is printed once: the listing shows no secret.
    listing = cli_ok(env, tmp_path, "keys", "list", "--user", user.id, "--json")
    assert "PRIVATE" not in listing
    assert created["clientId"] in listing
    # Without --json the key is shown too, once.
    text = cli_ok(env, tmp_path, "keys", "create", "--user", user.id, "--generate")
    assert text.count("-----BEGIN PRIVATE KEY-----") == 1


def _bad_jwks(private_keys: dict[str, PrivateKey]) -> dict[str, Any]:
    rsa_key = private_keys["rsa"]
    good = public_jwk(rsa_key, "good")
    return {
        "RSA private key": {"keys": [private_jwk(rsa_key, "private")]},
        "EC private key": {"keys": [private_jwk(private_keys["es384"], "private")]},
        "private key among public ones": {
            "keys": [good, private_jwk(private_keys["es256"], "private")]
        },
        "no keys": {"keys": []},
        "keys not a list": {"keys": good},
        "a bare key": good,
        "a list": [good],
        "no kid": {"keys": [{k: v for k, v in good.items() if k != "kid"}]},
        "empty kid": {"keys": [{**good, "kid": ""}]},
        "numeric kid": {"keys": [{**good, "kid": 7}]},
        "kid twice": {"keys": [good, public_jwk(private_keys["es256"], "good")]},
        "symmetric key": {"keys": [{"kty": "oct", "k": b64(b"0123456789abcdef"), "kid": "o"}]},
        "P-521 key": {"keys": [public_jwk(new_ec(ec.SECP521R1()), "p521")]},
        "alg not fitting": {"keys": [{**good, "alg": "ES256"}]},
        "HS256 alg": {"keys": [{**good, "alg": "HS256"}]},
        "broken modulus": {"keys": [{**good, "n": "!!!"}]},
        "missing coordinates": {
            "keys": [{k: v for k, v in public_jwk(private_keys["es256"], "e").items() if k != "y"}]
        },
        "key not an object": {"keys": ["a key"]},
    }


def fails_in_parallel(
    env: dict[str, str], cwd: Path, cases: dict[str, list[str]]
) -> dict[str, str]:
    """Runs each case's command line at once (they are independent); every one must fail
    cleanly. Returns each case's stderr line."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = dict(
            zip(cases, pool.map(lambda a: run_cli(env, cwd, *a), cases.values()), strict=True)
        )
    problems = []
    messages = {}
    for case, result in done.items():
        lines = result.stderr.strip().splitlines()
        if result.returncode == 0:
            problems.append(f"{case}: exit code 0; stdout {result.stdout[:200]!r}")
        elif "Traceback" in result.stderr or "Traceback" in result.stdout:
            problems.append(f"{case}: traceback: {result.stderr.strip().splitlines()[-1:]}")
        elif len(lines) != 1:
            problems.append(f"{case}: {len(lines)} stderr lines: {result.stderr[:300]!r}")
        else:
            messages[case] = lines[0]
    assert not problems, "\n".join(problems)
    return messages


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The console script in this process (for the many cases that fail before any
    database is touched); returns the exit code and stderr. An exception other than the
    command's own exit would be a traceback for the operator."""
    result = CliRunner().invoke(cli, list(args), env=env)
    exception = result.exception
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    return result.exit_code, result.stderr


def test_keys_create_refuses_bad_jwks(
    server: Server, org: Org, tmp_path: Path, private_keys: dict[str, PrivateKey]
) -> None:
    env = cli_env(server, tmp_path)
    user = make_user(org)
    secrets = {private_jwk(private_keys[name], "x")["d"] for name in ("rsa", "es256", "es384")}
    problems = []
    for i, (case, jwks) in enumerate(_bad_jwks(private_keys).items()):
        path = tmp_path / f"bad-{i}.json"
        path.write_text(json.dumps(jwks))
        code, stderr = invoke(env, "keys", "create", "--user", user.id, "--jwks", str(path))
        lines = stderr.strip().splitlines()
        if code == 0 or len(lines) != 1 or not lines[0].startswith("waypost: error:"):
            problems.append(f"{case}: exit {code}, stderr {stderr[:300]!r}")
        elif "private" in case and "private" not in lines[0].lower():
            problems.append(f"{case}: the message does not say why: {lines[0]}")
        elif any(secret in stderr for secret in secrets):
            problems.append(f"{case}: the private key is echoed back")
    assert not problems, "\n".join(problems)
    assert server.run(lambda db: auth_service.list_keys(db, user_id=user.id)) == []


def test_keys_create_usage_errors(server: Server, org: Org, tmp_path: Path) -> None:
    env = cli_env(server, tmp_path)
    user = make_user(org)
    jwks = write_jwks(tmp_path, [public_jwk(new_ec(ec.SECP256R1()), "k")])
    create = ["keys", "create", "--json"]
    for args in (
        [*create, "--user", "not-a-user-id", "--jwks", str(jwks)],
        [*create, "--user", str(uuid.uuid4()), "--generate"],
        [*create, "--user", user.id, "--jwks", str(jwks), "--generate"],
        [*create, "--user", user.id, "--jwks", str(tmp_path / "missing.json")],
    ):
        code, stderr = invoke(env, *args)
        lines = stderr.strip().splitlines()
        assert code != 0, args
        assert len(lines) == 1 and lines[0].startswith("waypost: error:"), (args, stderr)
    assert server.run(lambda db: auth_service.list_keys(db, user_id=user.id)) == []


def test_keys_create_errors(
    server: Server, org: Org, tmp_path: Path, private_keys: dict[str, PrivateKey]
) -> None:
    """As an operator meets them: a subprocess, exit code, one line on stderr."""
    env = cli_env(server, tmp_path)
    user = make_user(org)
    jwks = write_jwks(tmp_path, [public_jwk(new_ec(ec.SECP256R1()), "k")])
    private = write_jwks(tmp_path, [private_jwk(private_keys["rsa"], "k")])
    not_json = tmp_path / "not.json"
    not_json.write_text("{this is not json")
    create = ["keys", "create", "--json"]
    cases = {
        "unknown user": [*create, "--user", str(uuid.uuid4()), "--jwks", str(jwks)],
        "neither --jwks nor --generate": [*create, "--user", user.id],
        "private key": [*create, "--user", user.id, "--jwks", str(private)],
        "not json": [*create, "--user", user.id, "--jwks", str(not_json)],
    }
    messages = fails_in_parallel(env, tmp_path, cases)
    for case, message in messages.items():
        assert message.startswith("waypost: error:"), (case, message)
    assert "user" in messages["unknown user"]
    assert "--jwks" in messages["neither --jwks nor --generate"]
    assert "private" in messages["private key"]
    assert private_jwk(private_keys["rsa"], "k")["d"] not in messages["private key"]
    assert server.run(lambda db: auth_service.list_keys(db, user_id=user.id)) == []


def test_keys_list_unknown_user(server: Server, tmp_path: Path) -> None:
    env = cli_env(server, tmp_path)
    cli_fails(env, tmp_path, "keys", "list", "--user", str(uuid.uuid4()))
    cli_fails(env, tmp_path, "keys", "list", "--user", "nobody")


# --- the audit trail ------------------------------------------------------------------------


def test_keys_and_token_exchanges_are_audited(server: Server, org: Org, tmp_path: Path) -> None:
    user = make_user(org, "member", Development="viewer")
    keyed = register(server, tmp_path, org, user, {"k": (new_ec(ec.SECP384R1()), "ES384")})
    token = access_token(keyed, "k")
    cli_ok(cli_env(server, tmp_path), tmp_path, "keys", "revoke", keyed.client_id)
    events = audit_events(org)
    assert [e["type"] for e in events] == [
        "api-key-revoked",
        "platform-token-issued",
        "api-key-created",
    ]
    revoked, issued, created = events
    for event in events:
        assert event["organizationId"] == org.id
        assert event["status"] == "successful"
    assert created["userId"] is None  # the command line, not an API user
    assert created["details"]["userId"] == user.id
    assert created["details"]["clientId"] == keyed.client_id
    assert created["details"]["kids"] == [keyed.signers["k"].kid]
    assert issued["userId"] == user.id
    assert issued["route"] == "POST /v2/auth/token"
    assert issued["requestIp"] == "127.0.0.1"
    assert issued["details"]["clientId"] == keyed.client_id
    assert issued["details"]["kid"] == keyed.signers["k"].kid
    assert revoked["details"]["clientId"] == keyed.client_id
    with org.client() as api:
        text = api.get(f"{API}/organizations/{org.id}/audit-events").text
    assert token not in text


def test_refused_exchanges_issue_nothing(own_client: Client) -> None:
    server = own_client.server
    assert (
        token_request(server, own_client.assertion(iat=int(time.time()) - 3600)).status_code == 401
    )
    assert token_request(server, own_client.assertion(headers={"kid": "x"})).status_code == 401
    assert token_request(server, own_client.assertion(aud="https://x.test/")).status_code == 401
    assert [e["type"] for e in audit_events(own_client.org)] == ["api-key-created"]
