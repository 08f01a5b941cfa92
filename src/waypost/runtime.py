"""What a running app holds for its requests: the database and the secret box."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from waypost.crypto import SecretBox
from waypost.db import Database


@dataclass(frozen=True, slots=True)
class Runtime:
    db: Database
    secret_box: SecretBox


def runtime(request: Request) -> Runtime:
    # A plain call rather than a FastAPI dependency: dependencies cost on every request.
    rt: Runtime = request.app.state.runtime
    return rt
