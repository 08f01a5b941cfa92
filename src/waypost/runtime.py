"""What a running app holds for its requests: settings, database, secrets, outbound HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

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


def runtime(request: Request) -> Runtime:
    # A plain call rather than a FastAPI dependency: dependencies cost on every request.
    rt: Runtime = request.app.state.runtime
    return rt
