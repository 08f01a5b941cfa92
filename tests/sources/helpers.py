"""Helpers for the source tests: sources and OAuth API keys over HTTP, signed client
assertions, a loopback JWKS server, and direct reads of what is stored."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from tests.receivers import Receiver, Reply, Seen
from tests.support import Org, Server

from waypost.db import Database
from waypost.runtime import Runtime
from waypost.sources import service as sources
from waypost.sources.tables import source_tokens
from waypost.sources.tables import sources as sources_table

API = "/platform/v1"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY_NOT_FOUND = "Public key not found, check client_id, kid and Redox dashboard settings"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def env_sources(env_id: str) -> str:
    return f"{API}/environments/{env_id}/sources"


def source_url(source_id: str) -> str:
    return f"{API}/sources/{source_id}"


def env_apikeys(env_id: str) -> str:
    return f"{API}/environments/{env_id}/apikeys"


def apikey_url(apikey_id: str) -> str:
    return f"{API}/apikeys/{apikey_id}"


def create_source(org: Org, flag: str = "Development", name: str = "Lab feed") -> dict[str, Any]:
    """A new legacy-key source, as the create answer shows it (with its secret)."""
    with org.client() as api:
        response = api.post(env_sources(org.envs[flag]), json={"name": name})
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()["payload"]["source"]
    return source


def create_apikey(org: Org, body: dict[str, Any], flag: str = "Development") -> dict[str, Any]:
    with org.client() as api:
        response = api.post(env_apikeys(org.envs[flag]), json=body)
    assert response.status_code == 201, response.text
    apikey: dict[str, Any] = response.json()["payload"]["apikey"]
    return apikey


def authenticate(server: Server, api_key: str, secret: str) -> httpx.Response:
    with server.client() as client:
        return client.post("/auth/authenticate", json={"apiKey": api_key, "secret": secret})


# --- keys and assertions --------------------------------------------------------------


def new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_ec384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig")
    return jwk


def assertion(
    key: PrivateKey | str,
    *,
    client_id: str,
    aud: str,
    alg: str,
    kid: str | None = None,
    jti: str | None = None,
    **claims: Any,
) -> str:
    """A client assertion: iss and sub the client id, iat now, exp in four minutes."""
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 240,
        "jti": jti or str(uuid.uuid4()),
        **claims,
    }
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def token_request(server: Server, path: str, signed: str) -> httpx.Response:
    with server.client() as client:
        return client.post(
            path,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": signed,
            },
        )


def url_of(server: Server, path: str) -> str:
    return f"{server.base_url}{path}"


class JwksServer:
    """A loopback JWKS URL whose key set the test can change; counts the fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self._lock = threading.Lock()
        self.receiver = Receiver(self._respond)

    def _respond(self, _seen: Seen) -> Reply:
        with self._lock:
            body = json.dumps({"keys": self.keys}).encode()
        return Reply(200, body, {"Content-Type": "application/json"})

    def publish(self, *keys: dict[str, Any]) -> None:
        with self._lock:
            self.keys = list(keys)

    @property
    def url(self) -> str:
        return self.receiver.url_for("/.well-known/jwks.json")

    @property
    def fetches(self) -> int:
        return len(self.receiver.seen)

    def __enter__(self) -> JwksServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.stop()


# --- what is stored ---------------------------------------------------------------------


def runtime_of(server: Server) -> Runtime:
    """The running app's runtime (its process-wide caches)."""
    app: Any = server._server.config.app
    rt: Runtime = app.state.runtime
    return rt


def stored_source(server: Server, source_id: str) -> dict[str, Any]:
    async def read(db: Database) -> dict[str, Any]:
        async with db.read() as conn:
            row = (
                await conn.execute(sa.select(sources_table).where(sources_table.c.id == source_id))
            ).first()
        assert row is not None
        return dict(row._mapping)

    result: dict[str, Any] = server.run(read)
    return result


def set_source_columns(server: Server, source_id: str, **values: Any) -> None:
    async def write(db: Database) -> None:
        async with db.write() as conn:
            await conn.execute(
                sources_table.update().where(sources_table.c.id == source_id).values(**values)
            )

    server.run(write)


def expire_tokens(server: Server, source_id: str) -> None:
    async def write(db: Database) -> None:
        async with db.write() as conn:
            await conn.execute(
                source_tokens.update()
                .where(source_tokens.c.source_id == source_id)
                .values(expires_at="2000-01-01T00:00:00.000000Z")
            )

    server.run(write)


def sending_source(server: Server, token: str) -> sources.SendingSource | None:
    result: sources.SendingSource | None = server.run(
        lambda db: sources.source_for_token(db, token)
    )
    return result
