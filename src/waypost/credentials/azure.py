"""What the Azure SDK needs to sign a storage request with a Waypost credential.

An OAuth credential's token comes from Waypost's token cache, not from azure-identity:
one cache, one set of outbound rules, and a token shared with every other use of the
credential. The adapter reports a short lifetime so that the SDK asks again on every
request and the cache alone decides when to renew.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken, AzureNamedKeyCredential, AzureSasCredential

ASK_AGAIN_AFTER_SECONDS = 1


class CachedTokenCredential:
    """An azure.core AsyncTokenCredential over the token cache."""

    def __init__(self, token: Callable[[], Awaitable[str]]) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # The scopes are the credential's own (`scopes` on the credential, for Azure
        # Storage https://storage.azure.com/.default), not the SDK's.
        return AccessToken(await self._token(), int(time.time()) + ASK_AGAIN_AFTER_SECONDS)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> CachedTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        return None


StorageSigner = CachedTokenCredential | AzureNamedKeyCredential | AzureSasCredential
