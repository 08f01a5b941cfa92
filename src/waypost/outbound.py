"""The one way out: every request Waypost sends to a user-supplied address goes here.

A server that posts to URLs its users type is a classic SSRF hole, so the guard sits
below every caller: the host is resolved, each address is checked, and the connection is
made to the checked addresses only (a DNS answer that changes between check and connect
cannot slip through). Certificates are verified; redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from azure.core.pipeline.transport._aiohttp import AioHttpTransport

from waypost import __version__
from waypost.db import refuse_inside_write

log = logging.getLogger("waypost.outbound")

USER_AGENT = f"Waypost/{__version__}"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundError(Exception):
    """A request that did not get an HTTP answer. `kind` says why, for callers to tell
    reasons apart: dns, refused, tls, timeout, guard, invalid_url or connection."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class GuardRefused(Exception):
    # Deliberately not an OSError: aiohttp would relabel it as a DNS failure.
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_allow_list(value: str) -> tuple[IPNetwork, ...]:
    """`WAYPOST_OUTBOUND_ALLOW`: comma-separated CIDRs that the guard lets through."""
    networks = []
    for part in value.split(","):
        part = part.strip()
        if part:
            networks.append(ipaddress.ip_network(part, strict=False))
    return tuple(networks)


def _refusal(address: IPAddress) -> str | None:
    """Why an address is not a public destination, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for reason, refused in checks:
        if refused:
            return reason
    if not address.is_global:
        return "not publicly routable"
    return None


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Guard:
    allow: tuple[IPNetwork, ...] = ()

    def check(self, host: str, address: IPAddress) -> None:
        if any(address in network for network in self.allow):
            return
        reason = _refusal(address)
        if reason is not None:
            target = f"{host} is" if _is_literal(host) else f"{host} resolves to {address},"
            article = "an" if reason[0] in "aeiou" else "a"
            raise GuardRefused(
                f"refused by the outbound guard: {target} {article} {reason} address "
                "(WAYPOST_OUTBOUND_ALLOW can list exceptions)"
            )


class _GuardedResolver(AbstractResolver):
    """Resolves, checks every address, and hands aiohttp only checked addresses."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        results: list[ResolveResult] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            self._guard.check(host, address)
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": int(sockaddr[1]),
                    "family": fam,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            raise OSError(f"{host} has no address")
        return results

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes  # at most the caller's limit
    location: str | None


class OutboundClient:
    """One per process. Create it inside the running event loop."""

    def __init__(self, allow: Iterable[IPNetwork] = (), ca_bundle: Path | None = None) -> None:
        self.guard = Guard(tuple(allow))
        context = ssl.create_default_context()
        if ca_bundle is not None:
            context.load_verify_locations(cafile=str(ca_bundle))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=_GuardedResolver(self.guard),
                ssl=context,
                use_dns_cache=False,
                limit=200,
            ),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # no proxy from the environment can route around the guard
        )

    async def close(self) -> None:
        await self._session.close()

    def azure_transport(self) -> AioHttpTransport:
        """A transport for Azure SDK clients that sends through this guarded session."""
        return _GuardedAzureTransport(self)

    def _check(self, method: str, url: str) -> str:
        """Checks what the resolver cannot see (a request made inside a write transaction,
        an IP literal, which aiohttp connects to without resolving); returns the host."""
        refuse_inside_write(f"{method} {url}")
        host = urlsplit(url).hostname or ""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return host
        self.guard.check(host, literal)
        return host

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout_seconds: float,
        max_body: int = 64 * 1024,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: Any = None,
    ) -> OutboundResponse:
        host = urlsplit(url).hostname or ""
        try:
            self._check(method, url)
            async with self._session.request(
                method,
                url,
                headers=headers,
                params=params,
                json=json,
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ) as response:
                body = await _read_limited(response, max_body)
                return OutboundResponse(
                    status=response.status,
                    headers=dict(response.headers),
                    body=body,
                    location=response.headers.get("Location"),
                )
        except GuardRefused as exc:
            raise OutboundError("guard", exc.message) from None
        except TimeoutError:
            raise OutboundError(
                "timeout", f"no answer from {host} within {timeout_seconds:g} s"
            ) from None
        except aiohttp.ClientConnectorDNSError:
            raise OutboundError("dns", f"the name {host} could not be resolved") from None
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise OutboundError("tls", f"TLS with {host} failed: {_tls_reason(exc)}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                raise OutboundError("refused", f"{host} refused the connection") from None
            raise OutboundError("connection", f"cannot connect to {host}: {exc.os_error}") from None
        except aiohttp.InvalidURL:
            raise OutboundError("invalid_url", f"{url} is not a URL Waypost can send to") from None
        except aiohttp.ClientError as exc:
            raise OutboundError(
                "connection", f"the exchange with {host} failed: {type(exc).__name__}"
            ) from None


class _GuardedAzureTransport(AioHttpTransport):
    """The Azure SDK's aiohttp transport on the guarded session: the guard's resolver and
    certificate rules apply to every storage request, and the session stays Waypost's
    (the SDK never closes it). A refusal surfaces as GuardRefused."""

    def __init__(self, client: OutboundClient) -> None:
        super().__init__(session=client._session, session_owner=False)
        self._client = client

    async def send(self, request: Any, **config: Any) -> Any:
        self._client._check(request.method, request.url)
        return await super().send(request, **config)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _tls_reason(exc: Exception) -> str:
    certificate_error = getattr(exc, "certificate_error", None)
    if certificate_error is not None:
        return str(getattr(certificate_error, "verify_message", certificate_error))
    return str(exc)
