"""The one outbound HTTP module: its SSRF guard, TLS, redirects and limits.

Client-level tests use `OutboundClient` directly; API-level tests start servers with
their own settings (no loopback exception, or an extra CA bundle) on both backends.

No request may ever reach a private or metadata address: a tripwire on the event loop
records every connection attempt and refuses any that is not loopback, and the guard
tests assert that no attempt was made at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import waypost
from tests.receivers import (
    Receiver,
    Reply,
    Seen,
    TlsFiles,
    challenge_reply,
    fixed_reply,
    make_tls_files,
    receiving,
    unused_url,
)
from tests.support import Server, free_port, server_for
from waypost.outbound import OutboundClient, OutboundError, parse_allow_list

API = "/platform/v1"
LOOPBACK_ONLY = "127.0.0.0/8,::1/128"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def tripwire(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address the running loop is asked to connect to. A non-loopback address is
    refused here, so a broken guard can never send a test request off this machine."""
    loop = asyncio.get_running_loop()
    attempts: list[Any] = []
    original = loop.sock_connect

    async def guarded_connect(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        if not ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback:
            raise ConnectionRefusedError(f"tripwire: test refused to connect to {address}")
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", guarded_connect)
    return attempts


@pytest.fixture
async def guarded() -> AsyncIterator[OutboundClient]:
    """No exceptions: the guard as production runs it by default."""
    client = OutboundClient()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def loopback_client() -> AsyncIterator[OutboundClient]:
    client = OutboundClient(parse_allow_list(LOOPBACK_ONLY))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def receiver4() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


@pytest.fixture
def receiver6() -> Iterator[Receiver]:
    with receiving(host="::1") as receiver:
        yield receiver


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_receiver(tls_files: TlsFiles) -> Iterator[Receiver]:
    with receiving(challenge_reply(), ssl_context=tls_files.server_context()) as receiver:
        yield receiver


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def guarded_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with no outbound exception at all."""
    yield from server_for(request, tmp_path_factory, "guarded", outbound_allow="")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def ca_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[Server]:
    """A server that trusts the test CA (and lets loopback through, like the shared one)."""
    yield from server_for(request, tmp_path_factory, "ca", ca_bundle=tls_files.ca_pem)


# --- the guard, client level ------------------------------------------------------------------


LOOPBACK_V4_TARGETS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",  # a name that resolves to loopback
    "http://0.0.0.0:{port}/",  # Linux routes the unspecified address to loopback
    "http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
    "http://0x7f000001:{port}/",  # 127.0.0.1 in hex: a name the resolver turns into loopback
    "http://127.0.0.1:{port}/latest?x=1",
]


@pytest.mark.parametrize("template", LOOPBACK_V4_TARGETS)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_guard_refuses_loopback_without_exception(
    guarded: OutboundClient,
    receiver4: Receiver,
    tripwire: list[Any],
    template: str,
    method: str,
) -> None:
    url = template.format(port=receiver4.port)
    with pytest.raises(OutboundError) as caught:
        await guarded.request(method, url, timeout_seconds=2, json={"a": 1})
    assert caught.value.kind == "guard"
    assert "guard" in caught.value.message
    assert tripwire == []
    assert receiver4.seen == []


@pytest.mark.parametrize(
    "template", ["http://2130706433:{port}/", "http://127.1:{port}/", "http://0177.0.0.1:{port}/"]
)
async def test_other_spellings_of_loopback_never_connect(
    guarded: OutboundClient, receiver4: Receiver, tripwire: list[Any], template: str
) -> None:
    # Refused by the guard or as an invalid URL; either way nothing is sent.
    with pytest.raises(OutboundError) as caught:
        await guarded.request("GET", template.format(port=receiver4.port), timeout_seconds=2)
    assert caught.value.kind in {"guard", "invalid_url"}
    assert tripwire == []
    assert receiver4.seen == []


async def test_guard_refuses_ipv6_loopback(
    guarded: OutboundClient, receiver6: Receiver, tripwire: list[Any]
) -> None:
    with pytest.raises(OutboundError) as caught:
        await guarded.request("GET", f"http://[::1]:{receiver6.port}/", timeout_seconds=2)
    assert caught.value.kind == "guard"
    assert "loopback" in caught.value.message
    assert tripwire == []
    assert receiver6.seen == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://192.168.1.1:8080/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://100.64.0.1/", ""),  # shared address space: not publicly routable
        ("http://[fd00::1]/", "private"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data", "link-local"),
        ("https://10.0.0.1/", "private"),
    ],
)
async def test_guard_refuses_private_and_metadata_addresses(
    guarded: OutboundClient, tripwire: list[Any], url: str, reason: str
) -> None:
    with pytest.raises(OutboundError) as caught:
        await guarded.request("GET", url, timeout_seconds=2)
    assert caught.value.kind == "guard"
    assert "guard" in caught.value.message
    assert reason in caught.value.message
    assert tripwire == []  # refused before any connection was attempted


async def test_guard_refuses_metadata_even_with_loopback_allowed(
    loopback_client: OutboundClient, tripwire: list[Any]
) -> None:
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/"):
        with pytest.raises(OutboundError) as caught:
            await loopback_client.request("GET", url, timeout_seconds=2)
        assert caught.value.kind == "guard"
    assert tripwire == []


async def test_allow_list_that_does_not_cover_the_target(
    receiver4: Receiver, tripwire: list[Any]
) -> None:
    client = OutboundClient(parse_allow_list("192.0.2.0/24"))
    try:
        with pytest.raises(OutboundError) as caught:
            await client.request("GET", receiver4.url, timeout_seconds=2)
    finally:
        await client.close()
    assert caught.value.kind == "guard"
    assert tripwire == []
    assert receiver4.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_list_lets_loopback_through(
    receiver4: Receiver, tripwire: list[Any], host: str
) -> None:
    client = OutboundClient(parse_allow_list("127.0.0.0/8"))
    try:
        answer = await client.request(
            "POST",
            receiver4.url_for("in", host=host),
            timeout_seconds=2,
            json={"challenge": "abc"},
        )
    finally:
        await client.close()
    assert answer.status == 200
    assert b"abc" in answer.body
    [seen] = receiver4.seen
    assert seen.path == "/in"
    assert seen.headers["user-agent"] == f"Waypost/{waypost.__version__}"
    assert len(tripwire) == 1  # the tripwire does see real connections


async def test_allow_list_lets_ipv6_loopback_through(receiver6: Receiver) -> None:
    client = OutboundClient(parse_allow_list("::1/128"))
    try:
        answer = await client.request("GET", f"{receiver6.url}?challenge=c6", timeout_seconds=2)
    finally:
        await client.close()
    assert answer.status == 200
    assert len(receiver6.seen) == 1


def test_parse_allow_list() -> None:
    assert parse_allow_list("") == ()
    assert parse_allow_list(" , ") == ()
    assert parse_allow_list("127.0.0.0/8, ::1/128") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_allow_list("127.0.0.1") == (ipaddress.ip_network("127.0.0.1/32"),)
    with pytest.raises(ValueError):
        parse_allow_list("not-a-network")


# --- other behaviour, client level ------------------------------------------------------------


async def test_redirect_is_returned_not_followed(loopback_client: OutboundClient) -> None:
    with receiving() as target, receiving() as redirector:
        redirector.responder = fixed_reply(302, b"", Location=target.url)
        answer = await loopback_client.request("GET", redirector.url, timeout_seconds=2)
        assert answer.status == 302
        assert answer.location == target.url
        assert len(redirector.seen) == 1
        assert target.seen == []


async def test_body_is_read_up_to_the_limit(loopback_client: OutboundClient) -> None:
    big = b"a" * (10 * 1024 * 1024)
    with receiving(fixed_reply(200, big)) as receiver:
        answer = await loopback_client.request(
            "GET", receiver.url, timeout_seconds=2, max_body=64 * 1024
        )
        assert answer.status == 200
        assert answer.body == b"a" * (64 * 1024)


async def test_error_kinds(loopback_client: OutboundClient) -> None:
    with pytest.raises(OutboundError) as refused:
        await loopback_client.request("GET", unused_url(), timeout_seconds=2)
    assert refused.value.kind == "refused"
    with pytest.raises(OutboundError) as dns:
        await loopback_client.request("GET", "http://no-such-host.invalid/", timeout_seconds=2)
    assert dns.value.kind == "dns"

    def slow(_seen: Seen) -> Reply:
        return Reply(200, b"", delay=2.0)

    with receiving(slow) as receiver:
        with pytest.raises(OutboundError) as timeout:
            await loopback_client.request("GET", receiver.url, timeout_seconds=0.3)
    assert timeout.value.kind == "timeout"


# --- TLS, client level ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_untrusted_certificate_fails(
    loopback_client: OutboundClient, tls_receiver: Receiver, host: str
) -> None:
    with pytest.raises(OutboundError) as caught:
        await loopback_client.request("GET", tls_receiver.url_for("", host=host), timeout_seconds=2)
    assert caught.value.kind == "tls"
    assert "certificate" in caught.value.message.lower()
    assert tls_receiver.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_with_ca_bundle_succeeds(
    tls_files: TlsFiles, tls_receiver: Receiver, host: str
) -> None:
    client = OutboundClient(parse_allow_list(LOOPBACK_ONLY), ca_bundle=tls_files.ca_pem)
    try:
        answer = await client.request(
            "POST",
            tls_receiver.url_for("secure", host=host),
            timeout_seconds=2,
            json={"challenge": "tls-ok"},
        )
    finally:
        await client.close()
    assert answer.status == 200
    assert b"tls-ok" in answer.body
    [seen] = tls_receiver.seen
    assert seen.path == "/secure"


async def test_tls_hostname_mismatch_fails_even_with_ca_bundle(tls_files: TlsFiles) -> None:
    # The certificate names 127.0.0.1, ::1 and localhost; 127.0.0.2 is none of them.
    with receiving(host="127.0.0.2", ssl_context=tls_files.server_context()) as receiver:
        client = OutboundClient(parse_allow_list(LOOPBACK_ONLY), ca_bundle=tls_files.ca_pem)
        try:
            with pytest.raises(OutboundError) as caught:
                await client.request("GET", receiver.url, timeout_seconds=2)
        finally:
            await client.close()
        assert caught.value.kind == "tls"
        assert receiver.seen == []


# --- API level ----------------------------------------------------------------------------


def _verify_destination(server: Server, endpoint: str) -> tuple[httpx.Response, dict[str, Any]]:
    """Creates a Development destination and verifies it: the answer, then a GET's view."""
    org = server.new_org()
    with org.client() as api:
        created = api.post(
            f"{API}/environments/{org.dev}/destinations",
            json={"name": "d", "endpoint": endpoint, "verificationToken": "vt-guard"},
        )
        assert created.status_code == 201, created.text
        dest_id = created.json()["payload"]["destination"]["id"]
        answer = api.post(f"{API}/destinations/{dest_id}/verify")
        stored = api.get(f"{API}/destinations/{dest_id}")
        assert stored.status_code == 200
        return answer, stored.json()["payload"]["destination"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_api_guard_refuses_loopback(guarded_server: Server, receiver4: Receiver, host: str) -> None:
    answer, stored = _verify_destination(guarded_server, receiver4.url_for("", host=host))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert "guard" in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == ["endpoint"]
    assert stored["verified"] is False
    assert stored["verification"]["status"] == "failed"
    assert "guard" in stored["verification"]["error"]
    assert receiver4.seen == []


def test_api_guard_refuses_ipv6_loopback(guarded_server: Server, receiver6: Receiver) -> None:
    answer, _stored = _verify_destination(guarded_server, receiver6.url)
    assert answer.status_code == 422, answer.text
    assert "guard" in answer.json()["detail"]
    assert receiver6.seen == []


def test_api_guard_refuses_with_get_too(guarded_server: Server, receiver4: Receiver) -> None:
    org = guarded_server.new_org()
    with org.client() as api:
        created = api.post(
            f"{API}/environments/{org.dev}/destinations",
            json={"name": "d", "endpoint": receiver4.url, "verificationToken": "t"},
        )
        dest_id = created.json()["payload"]["destination"]["id"]
        answer = api.post(
            f"{API}/destinations/{dest_id}/verify", json={"verificationMethod": "GET"}
        )
    assert answer.status_code == 422, answer.text
    assert "guard" in answer.json()["detail"]
    assert receiver4.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_api_tls_untrusted_by_default(server: Server, tls_receiver: Receiver, host: str) -> None:
    answer, stored = _verify_destination(server, tls_receiver.url_for("", host=host))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "TLS" in detail and "certificate" in detail.lower(), detail
    assert stored["verification"]["status"] == "failed"
    assert tls_receiver.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_api_tls_with_ca_bundle_verifies(
    ca_server: Server, tls_receiver: Receiver, host: str, method: str
) -> None:
    org = ca_server.new_org()
    with org.client() as api:
        created = api.post(
            f"{API}/environments/{org.dev}/destinations",
            json={
                "name": "tls",
                "endpoint": tls_receiver.url_for("hook?source=x", host=host),
                "verificationToken": "vt-tls",
            },
        )
        assert created.status_code == 201, created.text
        dest_id = created.json()["payload"]["destination"]["id"]
        answer = api.post(
            f"{API}/destinations/{dest_id}/verify", json={"verificationMethod": method}
        )
    assert answer.status_code == 200, answer.text
    destination = answer.json()["payload"]["destination"]
    assert destination["verified"] is True
    assert destination["verification"]["status"] == "verified"
    assert destination["verification"]["method"] == method
    [seen] = tls_receiver.seen
    assert seen.method == method
    assert seen.path == "/hook"
    assert seen.headers["verification-token"] == "vt-tls"


@pytest.mark.parametrize("flag", ["Staging", "Production"])
def test_api_tls_with_ca_bundle_in_https_only_environments(
    ca_server: Server, tls_receiver: Receiver, flag: str
) -> None:
    org = ca_server.new_org()
    with org.client() as api:
        created = api.post(
            f"{API}/environments/{org.envs[flag]}/destinations",
            json={"name": "tls", "endpoint": tls_receiver.url, "verificationToken": "vt"},
        )
        assert created.status_code == 201, created.text
        dest_id = created.json()["payload"]["destination"]["id"]
        answer = api.post(f"{API}/destinations/{dest_id}/verify")
    assert answer.status_code == 200, answer.text
    assert len(tls_receiver.seen) == 1


def test_free_port_receiver_is_refused_not_guarded(server: Server) -> None:
    # The shared server lets loopback through: a closed port is "refused", not "guard".
    answer, _stored = _verify_destination(server, f"http://127.0.0.1:{free_port()}/")
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "refused" in detail and "guard" not in detail
