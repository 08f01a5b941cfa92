"""`waypost secrets reencrypt`, run as a subprocess as an operator would, on a database
whose secrets a server sealed with the old key: on SQLite and PostgreSQL, and while a
server holding both keys takes traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.credentials.helpers import (
    API,
    api_key_fields,
    basic_fields,
    create_ok,
    oauth_fields,
    payload,
    try_token,
)
from tests.credentials.token_server import TokenServer
from tests.support import scratch_postgres_database, start_server
from waypost.credentials.service import secret_context
from waypost.credentials.tables import auth_credentials
from waypost.crypto import SecretBox, new_secret_key
from waypost.db import driver_url
from waypost.destinations.tables import destinations

WAYPOST = str(Path(sys.executable).with_name("waypost"))


def waypost(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    return subprocess.run(
        [WAYPOST, *args],
        capture_output=True,
        text=True,
        env={**clean, **{f"WAYPOST_{k}": v for k, v in env.items()}},
        timeout=60,
    )


def key_id(key: str) -> str:
    """The key id a ciphertext sealed with `key` carries."""
    return SecretBox.from_setting(key).encrypt("probe", "probe").split(":")[1]


def stored(url: str) -> list[tuple[str, str, str]]:
    """(context, ciphertext, what) for every secret in the database."""
    engine = sa.create_engine(driver_url(url))
    try:
        with engine.connect() as conn:
            found = [
                (secret_context(row.id, name), sealed, f"{row.id}.{name}")
                for row in conn.execute(sa.select(auth_credentials))
                for name, sealed in row.secrets.items()
            ]
            found += [
                (f"destination:{row.id}:verificationToken", row.verification_token, row.id)
                for row in conn.execute(sa.select(destinations))
                if row.verification_token is not None
            ]
    finally:
        engine.dispose()
    return found


def test_reencrypt_moves_every_secret_onto_the_first_key(tmp_path: Path) -> None:
    old, new = new_secret_key(), new_secret_key()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'waypost.db'}"
    server = start_server("sqlite", url, data, secret_key=old)
    try:
        org = server.new_org()
        with org.client() as api:
            oauth = create_ok(api, org.dev, **oauth_fields("https://a.example/t"))
            key = create_ok(api, org.dev, **api_key_fields(apiKeyValue="api-key-1"))
            basic = create_ok(api, org.staging, **basic_fields(password="pass-1"))
            dest = payload(
                api.post(
                    f"{API}/environments/{org.dev}/destinations",
                    json={
                        "name": "feed",
                        "endpoint": "https://r.example/redox",
                        "verificationToken": "vt-1",
                        "authCredential": oauth["id"],
                    },
                ),
                201,
            )["destination"]
    finally:
        server.stop()
    plain = {
        secret_context(oauth["id"], "clientSecret"): "s3cret-value",
        secret_context(key["id"], "apiKeyValue"): "api-key-1",
        secret_context(basic["id"], "password"): "pass-1",
        f"destination:{dest['id']}:verificationToken": "vt-1",
    }
    before = stored(url)
    assert {context for context, _, _ in before} == set(plain)
    assert {sealed.split(":")[1] for _, sealed, _ in before} == {key_id(old)}

    # Without the old key nothing can be opened, and nothing changes.
    refused = waypost({"DATA_DIR": str(data), "SECRET_KEY": new}, "secrets", "reencrypt")
    assert refused.returncode == 1
    assert "cannot be opened" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert stored(url) == before

    env = {"DATA_DIR": str(data), "SECRET_KEY": f"{new},{old}"}
    done = waypost(env, "secrets", "reencrypt", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"reencrypted": 4}

    after = stored(url)
    assert {sealed.split(":")[1] for _, sealed, _ in after} == {key_id(new)}
    only_new = SecretBox.from_setting(new)
    for context, sealed, what in after:
        assert only_new.decrypt(sealed, context) == plain[context], what

    again = waypost(env, "secrets", "reencrypt")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("re-encrypted 0 secret(s)")
    assert stored(url) == after


def test_a_server_with_only_the_new_key_uses_the_secrets(tmp_path: Path) -> None:
    """After rotation, the old key can go: the token server still gets the right secret."""
    old, new = new_secret_key(), new_secret_key()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'waypost.db'}"
    with TokenServer() as tokens:
        server = start_server("sqlite", url, data, secret_key=old)
        try:
            org = server.new_org()
            with org.client() as api:
                credential = create_ok(api, org.dev, **oauth_fields(tokens.url))
                assert try_token(api, credential["id"])["success"] is True
        finally:
            server.stop()
        env = {"DATA_DIR": str(data), "SECRET_KEY": f"{new},{old}"}
        done = waypost(env, "secrets", "reencrypt")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("re-encrypted 1 secret(s)")
        server = start_server("sqlite", url, data, secret_key=new)
        try:
            with server.client(org.owner_token) as api:
                assert try_token(api, credential["id"])["success"] is True
        finally:
            server.stop()
        assert tokens.issued == 2


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend, URL) of a new database, empty until a server migrates it."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'data' / 'waypost.db'}"
        return
    with scratch_postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        yield "postgres", url


def test_rotation_while_a_server_with_both_keys_takes_traffic(
    database: tuple[str, str], tmp_path: Path
) -> None:
    """README's rotation, step by step, with writes racing the re-encryption: every secret
    ends on the new key and opens to what was sent, and a server with only the new key
    then uses a secret sealed before the rotation."""
    backend, url = database
    data = tmp_path / "data"
    old, new = new_secret_key(), new_secret_key()
    plain: dict[str, str] = {}
    with TokenServer() as tokens:
        server = start_server(backend, url, data, secret_key=old)
        try:
            org = server.new_org()
            with org.client() as api:
                credential = create_ok(api, org.dev, **oauth_fields(tokens.url))
                plain[secret_context(credential["id"], "clientSecret")] = "s3cret-value"
                for n in range(10):
                    made = _destination(api, org.dev, f"before-{n}")
                    plain[f"destination:{made}:verificationToken"] = f"before-{n}"
        finally:
            server.stop()

        server = start_server(backend, url, data, secret_key=f"{new},{old}")
        stop = threading.Event()
        failures: list[str] = []

        def traffic(worker: int) -> None:
            with server.client(org.owner_token) as api:
                n = 0
                while not stop.is_set():
                    try:
                        made = _destination(api, org.dev, f"during-{worker}-{n}")
                        plain[f"destination:{made}:verificationToken"] = f"during-{worker}-{n}"
                        assert try_token(api, credential["id"])["success"] is True
                    except (AssertionError, httpx.HTTPError) as exc:
                        failures.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                    n += 1

        threads = [threading.Thread(target=traffic, args=(w,)) for w in range(2)]
        try:
            for thread in threads:
                thread.start()
            done = waypost(
                {"DATABASE_URL": url, "DATA_DIR": str(data), "SECRET_KEY": f"{new},{old}"},
                "secrets",
                "reencrypt",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            server.stop()
        assert done.returncode == 0, done.stderr
        assert not failures, failures[:3]
        assert len(plain) > 11, "no traffic overlapped the re-encryption"

        after = stored(url)
        assert {context for context, _, _ in after} == set(plain)
        only_new = SecretBox.from_setting(new)
        for context, sealed, what in after:
            assert sealed.split(":")[1] == key_id(new), what
            assert only_new.decrypt(sealed, context) == plain[context], what

        server = start_server(backend, url, data, secret_key=new)
        try:
            with server.client(org.owner_token) as api:
                assert try_token(api, credential["id"])["success"] is True
        finally:
            server.stop()


def _destination(api: httpx.Client, env_id: str, token: str) -> str:
    made = payload(
        api.post(
            f"{API}/environments/{env_id}/destinations",
            json={"name": token, "endpoint": "https://r.example/in", "verificationToken": token},
        ),
        201,
    )
    destination_id: str = made["destination"]["id"]
    return destination_id
