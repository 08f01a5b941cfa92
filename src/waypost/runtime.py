"""What a running app holds for its requests: settings, database, secrets, outbound HTTP,
and the access tokens of auth credentials."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from waypost.credentials.cache import TokenCache
from waypost.crypto import SecretBox
from waypost.db import Database
from waypost.outbound import OutboundClient
from waypost.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    db: Database
    secret_box: SecretBox
    outbound: OutboundClient
    # One per process: every destination that uses a credential shares its token.
    tokens: TokenCache = field(default_factory=TokenCache)


def runtime(request: Request) -> Runtime:
    # A plain call rather than a FastAPI dependency: dependencies cost on every request.
    rt: Runtime = request.app.state.runtime
    return rt
