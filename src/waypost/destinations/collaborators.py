"""What destinations asks of features that depend on it, and so cannot be imported here:
the delivery feature writes to a cloud destination's container (the verify probe), and
the credentials feature knows which destinations a credential can serve. The app hands
both in once, when it is assembled (`connect`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from waypost.db import Connection
from waypost.destinations.target import DeliveryTarget, Failure
from waypost.runtime import Runtime

# Writes, reads back and deletes a probe blob: None, or why that failed (the field to
# look at, and the reason).
CloudProbe = Callable[[Runtime, DeliveryTarget], Awaitable[Failure | None]]
# Why this credential cannot serve a destination of this kind (cloud: True), or None:
# it can, or there is no such credential (the foreign key says so).
CredentialFit = Callable[[Connection, str, bool], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Collaborators:
    cloud_probe: CloudProbe
    credential_fit: CredentialFit


_connected: Collaborators | None = None


def connect(*, cloud_probe: CloudProbe, credential_fit: CredentialFit) -> None:
    global _connected  # set once, where the app is assembled
    _connected = Collaborators(cloud_probe, credential_fit)


def collaborators() -> Collaborators:
    if _connected is None:
        raise RuntimeError("destinations has no collaborators: the app must call connect()")
    return _connected
