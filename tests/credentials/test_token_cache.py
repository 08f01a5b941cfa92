"""The token cache and `access_token`, as a delivery worker will use them, on both backends.

The credentials are made over the API of the running test server; the tokens are fetched
by a runtime in this test's event loop (the `rt` fixture: the same database and key, and
an outbound client that lets loopback through), from a real token server that counts what
it issues.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
import sqlalchemy as sa

from tests.credentials.helpers import (
    api_key_fields,
    basic_fields,
    create_ok,
    oauth_fields,
    patch,
    payload,
    try_token,
)
from tests.credentials.token_server import TokenServer
from tests.support import Org, Server
from waypost.credentials import service
from waypost.credentials.tables import auth_credentials
from waypost.credentials.tokens import TokenError
from waypost.runtime import Runtime
from waypost.runtime.token_cache import Token, TokenCache


def oauth_credential(org: Org, url: str, **fields: Any) -> str:
    with org.client() as api:
        credential_id: str = create_ok(api, org.dev, **oauth_fields(url, **fields))["id"]
    return credential_id


async def test_two_calls_make_one_fetch(org: Org, token_server: TokenServer, rt: Runtime) -> None:
    credential_id = oauth_credential(org, token_server.url)
    first = await service.access_token(rt, credential_id)
    second = await service.access_token(rt, credential_id)
    assert first == second
    assert first.startswith("token-1-")
    assert token_server.issued == 1


async def test_concurrent_callers_share_one_fetch(
    org: Org, token_server: TokenServer, rt: Runtime
) -> None:
    credential_id = oauth_credential(org, token_server.url)
    tokens = await asyncio.gather(*(service.access_token(rt, credential_id) for _ in range(20)))
    assert len(set(tokens)) == 1
    assert token_server.issued == 1
    assert len(token_server.seen) == 1


async def test_every_destination_of_a_credential_shares_its_token(
    org: Org, token_server: TokenServer, rt: Runtime
) -> None:
    credential_id = oauth_credential(org, token_server.url)
    with org.client() as api:
        attached = [
            payload(
                api.post(
                    f"/platform/v1/environments/{org.dev}/destinations",
                    json={
                        "name": f"feed {n}",
                        "endpoint": "https://receiver.example.org/redox",
                        "authCredential": credential_id,
                    },
                ),
                201,
            )["destination"]["authCredential"]
            for n in range(3)
        ]
    headers = [await service.authorization_headers(rt, c) for c in attached]
    assert len({h["Authorization"] for h in headers}) == 1
    assert headers[0]["Authorization"].startswith("Bearer token-1-")
    assert token_server.issued == 1


async def test_an_expiring_token_is_fetched_again(
    org: Org, token_server: TokenServer, rt: Runtime
) -> None:
    token_server.expect.expires_in = 1
    credential_id = oauth_credential(org, token_server.url)
    first = await service.access_token(rt, credential_id)
    assert await service.access_token(rt, credential_id) == first
    await asyncio.sleep(1.0)  # renewed shortly before it expires: 0.9 s here
    second = await service.access_token(rt, credential_id)
    assert second != first
    assert token_server.issued == 2


async def test_an_edit_makes_the_next_caller_fetch_again(
    org: Org, token_server: TokenServer, rt: Runtime
) -> None:
    credential_id = oauth_credential(org, token_server.url)
    first = await service.access_token(rt, credential_id)
    with org.client() as api:
        payload(patch(api, credential_id, name="renamed"))
    second = await service.access_token(rt, credential_id)
    assert second != first
    assert await service.access_token(rt, credential_id) == second
    assert token_server.issued == 2


async def test_a_failed_fetch_is_not_cached(
    org: Org, token_server: TokenServer, rt: Runtime
) -> None:
    credential_id = oauth_credential(org, token_server.url, clientSecret="bad-secret-xyz")
    with pytest.raises(TokenError) as refused:
        await service.access_token(rt, credential_id)
    assert refused.value.status == 401
    assert "bad-secret-xyz" not in refused.value.message
    with org.client() as api:
        payload(patch(api, credential_id, clientSecret="s3cret-value"))
    assert (await service.access_token(rt, credential_id)).startswith("token-1-")


def running_cache(server: Server) -> TokenCache:
    """The token cache of the test server's own process."""
    app: Any = server._server.config.app
    cache: TokenCache = app.state.runtime.tokens
    return cache


def test_the_test_endpoint_fetches_fresh_and_fills_the_cache(
    org: Org, server: Server, token_server: TokenServer
) -> None:
    credential_id = oauth_credential(org, token_server.url)
    with org.client() as api:
        version = payload(api.get(f"/platform/v1/authcredentials/{credential_id}"))[
            "authCredential"
        ]["updatedAt"]
        assert running_cache(server).get(credential_id, version) is None
        try_token(api, credential_id)
        try_token(api, credential_id)
    assert token_server.issued == 2  # the second did not use the cache
    cached = running_cache(server).get(credential_id, version)
    assert cached is not None and cached.startswith("token-2-")


def test_deleting_a_credential_drops_its_token(
    org: Org, server: Server, token_server: TokenServer
) -> None:
    credential_id = oauth_credential(org, token_server.url)
    with org.client() as api:
        try_token(api, credential_id)
        version = payload(api.get(f"/platform/v1/authcredentials/{credential_id}"))[
            "authCredential"
        ]["updatedAt"]
        assert running_cache(server).get(credential_id, version) is not None
        payload(api.delete(f"/platform/v1/authcredentials/{credential_id}"))
    assert running_cache(server).get(credential_id, version) is None


async def test_header_strategies(org: Org, rt: Runtime) -> None:
    with org.client() as api:
        key = create_ok(api, org.dev, **api_key_fields(headerName="X-Api-Key", apiKeyValue="k1"))
        basic = create_ok(api, org.dev, **basic_fields(username="svc", password="pä ss"))
    assert await service.authorization_headers(rt, key["id"]) == {"X-Api-Key": "k1"}
    expected = base64.b64encode("svc:pä ss".encode()).decode()
    assert await service.authorization_headers(rt, basic["id"]) == {
        "Authorization": f"Basic {expected}"
    }
    with pytest.raises(TokenError, match="no access token"):
        await service.access_token(rt, key["id"])


async def test_unknown_credential(rt: Runtime) -> None:
    with pytest.raises(TokenError, match="does not exist"):
        await service.access_token(rt, "00000000-0000-4000-8000-000000000000")


async def test_a_ciphertext_moved_to_another_credential_cannot_be_opened(
    org: Org, token_server: TokenServer, rt: Runtime
) -> None:
    """Each secret is bound to its row and field: copying it elsewhere does not work."""
    source = oauth_credential(org, token_server.url)
    target = oauth_credential(org, token_server.url, clientSecret="other-secret")
    async with rt.db.write() as conn:
        sealed = await conn.scalar(
            sa.select(auth_credentials.c.secrets).where(auth_credentials.c.id == source)
        )
        await conn.execute(
            sa.update(auth_credentials)
            .where(auth_credentials.c.id == target)
            .values(secrets=sealed)
        )
    with pytest.raises(TokenError, match="cannot be opened"):
        await service.access_token(rt, target)
    assert token_server.seen == []


# --- the cache itself ---------------------------------------------------------------------------


async def test_a_caller_giving_up_does_not_cancel_the_shared_fetch() -> None:
    cache = TokenCache()
    release = asyncio.Event()
    fetches = 0

    async def fetch() -> Token:
        nonlocal fetches
        fetches += 1
        await release.wait()
        return Token("shared", 600)

    impatient = asyncio.create_task(cache.get_or_fetch("c", "v1", fetch))
    patient = asyncio.create_task(cache.get_or_fetch("c", "v1", fetch))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == "shared"
    assert impatient.cancelled()
    assert fetches == 1
    assert cache.get("c", "v1") == "shared"
    # An older version finishing late does not replace a newer token.
    await cache.put("c", "v2", Token("newer", 600))
    await cache.put("c", "v1", Token("older", 600))
    assert cache.get("c", "v2") == "newer"
    assert cache.get("c", "v1") is None


async def test_renewal_comes_shortly_before_expiry() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    await cache.put("long", "v", Token("t", 3600))
    await cache.put("short", "v", Token("t", 30))
    now[0] += 3600 - 61
    assert cache.get("long", "v") == "t"
    now[0] = 1000.0 + 3600 - 60
    assert cache.get("long", "v") is None  # a minute early
    now[0] = 1000.0 + 26.9
    assert cache.get("short", "v") == "t"
    now[0] = 1000.0 + 27.0
    assert cache.get("short", "v") is None  # a tenth of its life early
