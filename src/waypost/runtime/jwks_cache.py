"""Public keys published at a JWKS URL (by sources today), fetched through the outbound
guard and kept per process. It sits below the features, like token_cache, because the
runtime holds one per process; the caller says what a usable key set is (`validate`).

A key set is kept for five minutes. An assertion naming a kid the kept set lacks (the
source rotated its keys) fetches again, but at most once a minute per URL, so that
assertions with made-up kids cannot turn Waypost into a client hammering that URL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waypost.outbound import OutboundClient, OutboundError

KEEP_SECONDS = 300.0
REFETCH_SECONDS = 60.0
MAX_JWKS_BYTES = 256 * 1024


class JwksUnavailable(Exception):
    """The key set could not be fetched or read; the message says why (no secret in it)."""


# Checks a fetched document and answers its keys; raises ValueError when it is no JWKS.
Validate = Callable[[Any], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Fetched:
    keys: dict[str, dict[str, Any]]  # by kid
    at: float


class JwksCache:
    def __init__(
        self,
        *,
        keep_seconds: float = KEEP_SECONDS,
        refetch_seconds: float = REFETCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep_seconds = keep_seconds
        self.refetch_seconds = refetch_seconds
        self.clock = clock
        self._sets: dict[str, _Fetched] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0  # how many requests went out, for operators and tests

    async def key(
        self,
        outbound: OutboundClient,
        url: str,
        kid: str,
        *,
        validate: Validate,
        timeout_seconds: float,
    ) -> dict[str, Any] | None:
        """The key named `kid` at `url`, or None when the set (fresh enough) lacks it.
        Never call this inside a database transaction: it may wait on the network."""
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            kept = self._sets.get(url)
            age = self.clock() - kept.at if kept is not None else None
            if kept is None or age is None or age >= self.keep_seconds:
                kept = await self._fetch(outbound, url, validate, timeout_seconds, stale=kept)
            elif kid not in kept.keys and age >= self.refetch_seconds:
                kept = await self._fetch(outbound, url, validate, timeout_seconds, stale=kept)
            return kept.keys.get(kid)

    def forget(self, url: str) -> None:
        self._sets.pop(url, None)

    async def _fetch(
        self,
        outbound: OutboundClient,
        url: str,
        validate: Validate,
        timeout_seconds: float,
        *,
        stale: _Fetched | None,
    ) -> _Fetched:
        self.fetches += 1
        try:
            keys = await _download(outbound, url, validate, timeout_seconds)
        except JwksUnavailable:
            if stale is None:
                raise
            # A key server that is down for a moment should not lock every sender out:
            # the keys it served last time still hold, until it answers again.
            keys = stale.keys
        fetched = _Fetched(keys, self.clock())
        self._sets[url] = fetched
        return fetched


async def _download(
    outbound: OutboundClient, url: str, validate: Validate, timeout_seconds: float
) -> dict[str, dict[str, Any]]:
    try:
        response = await outbound.request(
            "GET",
            url,
            timeout_seconds=timeout_seconds,
            max_body=MAX_JWKS_BYTES + 1,
            headers={"Accept": "application/json"},
        )
    except OutboundError as exc:
        raise JwksUnavailable(f"the JWKS URL could not be fetched: {exc.message}") from None
    if response.status != 200:
        raise JwksUnavailable(f"the JWKS URL answered HTTP {response.status}")
    if len(response.body) > MAX_JWKS_BYTES:
        raise JwksUnavailable(f"the JWKS at the URL is larger than {MAX_JWKS_BYTES} bytes")
    try:
        keys = validate(json.loads(response.body))
    except ValueError as exc:
        raise JwksUnavailable(f"the JWKS URL does not serve a usable JWKS: {exc}") from None
    return {jwk["kid"]: jwk for jwk in keys}
