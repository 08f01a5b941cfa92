"""`waypost secrets reencrypt`, run as a subprocess as an operator would, on a SQLite data
directory whose secrets a server sealed with the old key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
from tests.support import start_server
from waypost.credentials.service import secret_context
from waypost.credentials.tables import auth_credentials
from waypost.crypto import SecretBox, new_secret_key
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
    engine = sa.create_engine(url)
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
