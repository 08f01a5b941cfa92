"""Rate limits: Redox's 10,000 requests per 5 minutes per client address, configurable.

The HTTP tests run a server of their own on each backend with a limit of 5 per minute.
Each test speaks from an address of its own on the loopback network (127.0.x.y), so
the tests do not share a budget. The sliding window itself is tested with explicit
clock values, over counts kept in a dict; tests/test_processes.py shows the budget held
across processes in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.access_support import PROBLEM_JSON, assert_problem, env_destinations
from tests.support import Org, Server, server_for
from waypost.app import create_app
from waypost.crypto import new_secret_key
from waypost.db import migrate
from waypost.ratelimit import MemoryCounts, SlidingWindow
from waypost.settings import Settings

LIMIT = 5
WINDOW = 60
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

_addresses = itertools.count(2)


def new_address() -> str:
    """A loopback address no other test of this module speaks from."""
    n = next(_addresses)
    return f"127.0.{n // 250 + 10}.{n % 250 + 2}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of its own with a limit of 5 requests per 60 s."""
    yield from server_for(
        request,
        tmp_path_factory,
        "ratelimit",
        rate_limit_requests=LIMIT,
        rate_limit_window_seconds=WINDOW,
    )


@pytest.fixture
def limited_org(limited: Server) -> Org:
    return limited.new_org("Limited")


def client_from(server: Server, address: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=server.base_url,
        headers=headers,
        timeout=30,
        transport=httpx.HTTPTransport(local_address=address),
    )


def positive_int(value: str) -> int:
    assert value.isdigit(), value
    number = int(value)
    assert number > 0
    return number


def assert_limited(response: httpx.Response) -> int:
    """A 429 as problem+json with Retry-After and the X-RateLimit-* headers; returns
    Retry-After."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == 429
    assert body["title"]
    assert body["detail"]
    retry_after = positive_int(response.headers["retry-after"])
    assert retry_after <= 2 * WINDOW + 1
    assert response.headers["x-ratelimit-limit"] == str(LIMIT)
    assert response.headers["x-ratelimit-remaining"] == "0"
    # The two headers say the same: when a request will pass again.
    assert response.headers["x-ratelimit-reset"] == response.headers["retry-after"]
    return retry_after


# --- over HTTP ------------------------------------------------------------------------------


def test_remaining_counts_down_then_429(limited: Server, limited_org: Org) -> None:
    with client_from(limited, new_address(), limited_org.owner_token) as api:
        remaining = []
        for _ in range(LIMIT):
            response = api.get(env_destinations(limited_org.dev))
            assert response.status_code == 200, response.text
            assert response.headers["x-ratelimit-limit"] == str(LIMIT)
            reset = int(response.headers["x-ratelimit-reset"])
            assert 1 <= reset <= WINDOW
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        assert_limited(api.get(env_destinations(limited_org.dev)))
        # Still refused: refusals do not open the gate.
        assert_limited(api.get(f"/platform/v1/organizations/{limited_org.id}/environments"))


def test_a_refused_request_changes_nothing(limited: Server, limited_org: Org) -> None:
    with client_from(limited, new_address(), limited_org.owner_token) as api:
        for _ in range(LIMIT):
            assert api.get(env_destinations(limited_org.dev)).status_code == 200
        refused = api.post(
            env_destinations(limited_org.dev),
            json={"name": "too many", "endpoint": "http://receiver.test/"},
        )
        assert_limited(refused)
    # From another address: nothing was created.
    with client_from(limited, new_address(), limited_org.owner_token) as api:
        listed = api.get(env_destinations(limited_org.dev))
        assert listed.status_code == 200
        assert listed.json()["payload"]["destinations"] == []


def test_unauthenticated_requests_count_too(limited: Server, limited_org: Org) -> None:
    with client_from(limited, new_address()) as api:
        for expected in range(LIMIT - 1, -1, -1):
            response = api.get(env_destinations(limited_org.dev))
            assert_problem(response, 401)
            assert response.headers["x-ratelimit-remaining"] == str(expected)
        assert_limited(api.get(env_destinations(limited_org.dev)))


def test_every_method_counts(limited: Server, limited_org: Org) -> None:
    with client_from(limited, new_address(), limited_org.owner_token) as api:
        created = api.post(
            env_destinations(limited_org.dev),
            json={"name": "counted", "endpoint": "http://receiver.test/"},
        )
        assert created.status_code == 201
        assert created.headers["x-ratelimit-remaining"] == "4"
        destination_id = created.json()["payload"]["destination"]["id"]
        patched = api.patch(f"/platform/v1/destinations/{destination_id}", json={"name": "x"})
        assert patched.headers["x-ratelimit-remaining"] == "3"
        missing = api.get(f"/platform/v1/destinations/{uuid.uuid4()}")
        assert_problem(missing, 404)
        assert missing.headers["x-ratelimit-remaining"] == "2"
        deleted = api.delete(f"/platform/v1/destinations/{destination_id}")
        assert deleted.headers["x-ratelimit-remaining"] == "1"
        invalid = api.post(env_destinations(limited_org.dev), json={"name": ""})
        assert invalid.status_code == 422
        assert invalid.headers["x-ratelimit-remaining"] == "0"
        assert_limited(api.get(env_destinations(limited_org.dev)))


def test_the_token_endpoint_is_limited(limited: Server) -> None:
    with client_from(limited, new_address()) as api:
        for expected in range(LIMIT - 1, -1, -1):
            response = api.post("/v2/auth/token", data={"grant_type": "client_credentials"})
            assert response.status_code == 400, response.text
            assert response.headers["x-ratelimit-remaining"] == str(expected)
        assert_limited(api.post("/v2/auth/token", data={"grant_type": "client_credentials"}))


def test_each_address_has_its_own_budget(limited: Server, limited_org: Org) -> None:
    first, second = new_address(), new_address()
    with client_from(limited, first, limited_org.owner_token) as api:
        for _ in range(LIMIT):
            assert api.get(env_destinations(limited_org.dev)).status_code == 200
        assert_limited(api.get(env_destinations(limited_org.dev)))
    with client_from(limited, second, limited_org.owner_token) as api:
        response = api.get(env_destinations(limited_org.dev))
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining"] == str(LIMIT - 1)
    # A new connection from the first address is still refused.
    with client_from(limited, first, limited_org.owner_token) as api:
        assert_limited(api.get(env_destinations(limited_org.dev)))


def test_health_is_not_limited(limited: Server, limited_org: Org) -> None:
    with client_from(limited, new_address(), limited_org.owner_token) as api:
        for _ in range(3 * LIMIT):
            health = api.get("/health")
            assert health.status_code == 200
            for header in RATE_HEADERS:
                assert header not in health.headers
        # Health checks spent nothing of the budget.
        for expected in range(LIMIT - 1, -1, -1):
            response = api.get(env_destinations(limited_org.dev))
            assert response.status_code == 200
            assert response.headers["x-ratelimit-remaining"] == str(expected)
        assert_limited(api.get(env_destinations(limited_org.dev)))
        # Over the limit, health still answers.
        assert api.get("/health").status_code == 200


def test_shared_test_servers_have_no_limit(server: Server, org: Org) -> None:
    """rate_limit_requests=0 turns the limit off: no headers, no 429."""
    with server.client(org.owner_token) as api:
        for _ in range(LIMIT + 2):
            response = api.get(env_destinations(org.dev))
            assert response.status_code == 200
            for header in RATE_HEADERS:
                assert header not in response.headers


# --- settings -------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("WAYPOST_RATE_LIMIT_REQUESTS", "WAYPOST_RATE_LIMIT_WINDOW_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_is_redoxs_limit(clean_env: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert defaults.rate_limit_requests == 10_000
    assert defaults.rate_limit_window_seconds == 300


def test_limit_comes_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WAYPOST_RATE_LIMIT_REQUESTS", "250")
    clean_env.setenv("WAYPOST_RATE_LIMIT_WINDOW_SECONDS", "30")
    configured = Settings()
    assert configured.rate_limit_requests == 250
    assert configured.rate_limit_window_seconds == 30


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WAYPOST_RATE_LIMIT_REQUESTS", "-1"),
        ("WAYPOST_RATE_LIMIT_REQUESTS", "many"),
        ("WAYPOST_RATE_LIMIT_WINDOW_SECONDS", "0"),
        ("WAYPOST_RATE_LIMIT_WINDOW_SECONDS", "-5"),
    ],
)
def test_nonsense_limits_are_refused(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=name.removeprefix("WAYPOST_").lower()):
        Settings()


async def _statuses(app_settings: Settings, count: int) -> list[httpx.Response]:
    """`count` unauthenticated API requests to an app (no database needed for a 401)."""
    migrate(app_settings.resolved_database_url())
    app = create_app(app_settings)
    transport = httpx.ASGITransport(app=app)
    responses = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://waypost.test") as api,
    ):
        for _ in range(count):
            responses.append(
                await api.get(f"/platform/v1/environments/{uuid.uuid4()}/destinations")
            )
    return responses


def _app_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'waypost.db'}",
        secret_key=new_secret_key(),
        delivery_worker=False,
    )


async def test_an_app_with_default_settings_applies_redoxs_limit(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    responses = await _statuses(_app_settings(tmp_path), 3)
    assert [r.status_code for r in responses] == [401, 401, 401]
    assert [r.headers["x-ratelimit-limit"] for r in responses] == ["10000"] * 3
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["9999", "9998", "9997"]
    assert all(1 <= int(r.headers["x-ratelimit-reset"]) <= 300 for r in responses)


async def test_an_app_configured_from_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("WAYPOST_RATE_LIMIT_REQUESTS", "2")
    clean_env.setenv("WAYPOST_RATE_LIMIT_WINDOW_SECONDS", "30")
    responses = await _statuses(_app_settings(tmp_path), 4)
    assert [r.status_code for r in responses] == [401, 401, 429, 429]
    assert responses[2].headers["x-ratelimit-limit"] == "2"
    assert positive_int(responses[2].headers["retry-after"]) <= 61
    assert responses[2].headers["x-ratelimit-reset"] == responses[2].headers["retry-after"]


async def test_zero_turns_the_limit_off(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("WAYPOST_RATE_LIMIT_REQUESTS", "0")
    responses = await _statuses(_app_settings(tmp_path), 5)
    assert [r.status_code for r in responses] == [401] * 5
    assert all("x-ratelimit-limit" not in r.headers for r in responses)


# --- the sliding window, with explicit clock values -----------------------------------------


def new_window(limit: int, window_seconds: float) -> SlidingWindow:
    return SlidingWindow(limit, window_seconds, MemoryCounts())


async def assert_allowed_after(
    window: SlidingWindow, key: str, now: float, retry_after: int
) -> None:
    """A request `retry_after` seconds later passes (checked on a copy)."""
    probe = copy.deepcopy(window)
    later = await probe.take(key, now + retry_after)
    assert later.allowed, (now, retry_after)


@pytest.mark.parametrize("limit", [1, 2, 5, 100])
@pytest.mark.parametrize("now", [0.0, 6000.0, 6000.5, 6029.999, 6059.9, 1_767_225_600.25], ids=str)
async def test_exactly_limit_requests_pass(limit: int, now: float) -> None:
    window = new_window(limit, WINDOW)
    decisions = [await window.take("client", now) for _ in range(limit)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(limit - 1, -1, -1))
    for decision in decisions:
        assert 1 <= decision.reset_seconds <= WINDOW
        assert decision.retry_after == 0
    refused = await window.take("client", now)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after >= 1
    # Refused again a moment later; the refusals do not count against the client.
    again = await window.take("client", now + 0.001)
    assert not again.allowed
    await assert_allowed_after(window, "client", now + 0.001, again.retry_after)
    assert (await window.take("client", now + refused.retry_after)).allowed


async def test_keys_are_independent() -> None:
    window = new_window(2, WINDOW)
    assert (await window.take("a", 100.0)).allowed
    assert (await window.take("a", 100.0)).allowed
    assert not (await window.take("a", 100.0)).allowed
    assert (await window.take("b", 100.0)).allowed
    assert (await window.take("b", 100.0)).remaining == 0


async def test_the_window_slides() -> None:
    """Requests late in one window still weigh early in the next."""
    window = new_window(4, 60)
    for _ in range(4):
        assert (await window.take("k", 119.0)).allowed  # the end of window [60, 120)
    # Just after the boundary, the previous window still counts almost fully.
    early = await window.take("k", 121.0)
    assert not early.allowed
    assert early.retry_after >= 1
    await assert_allowed_after(window, "k", 121.0, early.retry_after)
    # Two windows later everything is forgotten.
    fresh = await window.take("k", 240.0)
    assert fresh.allowed
    assert fresh.remaining == 3


async def test_retry_after_is_exact_enough_for_a_burst() -> None:
    window = new_window(5, 60)
    for _ in range(5):
        await window.take("k", 30.0)
    refused = await window.take("k", 30.0)
    assert not refused.allowed
    await assert_allowed_after(window, "k", 30.0, refused.retry_after)
    # Not absurdly late either: within two windows.
    assert refused.retry_after <= 120


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=8),
    window_seconds=st.sampled_from([1.0, 7.5, 60.0, 300.0]),
    start=st.floats(min_value=0, max_value=2e9, allow_nan=False, allow_infinity=False),
    steps=st.lists(
        st.floats(min_value=0, max_value=400, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=40,
    ),
)
def test_retry_after_always_lets_the_next_request_through(
    limit: int, window_seconds: float, start: float, steps: list[float]
) -> None:
    asyncio.run(_retry_after_lets_through(limit, window_seconds, start, steps))


async def _retry_after_lets_through(
    limit: int, window_seconds: float, start: float, steps: list[float]
) -> None:
    window = new_window(limit, window_seconds)
    now = start
    burst_allowed = 0  # allowed requests at this very instant
    for step in steps:
        now += step
        if step > 0:
            burst_allowed = 0
        decision = await window.take("k", now)
        assert 0 <= decision.remaining < limit
        if decision.allowed:
            assert 1 <= decision.reset_seconds <= math.ceil(window_seconds)
            assert decision.retry_after == 0
            burst_allowed += 1
            assert burst_allowed <= limit
        else:
            assert decision.reset_seconds == decision.retry_after
            assert decision.retry_after >= 1
            assert decision.retry_after <= 2 * window_seconds + 1
            await assert_allowed_after(window, "k", now, decision.retry_after)


# --- leases: several processes spending one budget ----------------------------------------


@pytest.mark.parametrize("limit", [1, 7, 100, 10_000])
async def test_processes_sharing_counts_never_pass_more_than_the_limit(limit: int) -> None:
    """Each window is one process's view; they take leases from the same counts. Whatever
    the interleaving, exactly `limit` requests pass in a window, and the leases that made
    it took far fewer claims than requests when the limit is large."""
    counts = MemoryCounts()
    claims = 0
    claim = counts.claim

    async def counted_claim(client: str, period: int, want: int, cap: int) -> tuple[int, int]:
        nonlocal claims
        claims += 1
        return await claim(client, period, want, cap)

    counts.claim = counted_claim  # type: ignore[method-assign]
    processes = [SlidingWindow(limit, WINDOW, counts) for _ in range(3)]
    now = 6000.0
    passed = 0
    for n in range(2 * limit + 10):
        decision = await processes[(n * 7 + n // 3) % 3].take("client", now)
        passed += decision.allowed
    assert passed == limit
    if limit == 10_000:
        assert claims < limit / 20, claims
