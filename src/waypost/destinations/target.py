"""A destination as a sender sees it (what delivery and the verify probe need), and
what a failed check of it points at."""

from __future__ import annotations

from dataclasses import dataclass

from waypost.destinations.delivery_settings import DeliverySettings
from waypost.destinations.schemas import CloudProviderSettings
from waypost.kinds import EnvironmentFlag


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """What a sender needs to deliver to a destination, secrets opened."""

    id: str
    name: str
    environment_id: str
    environment_flag: EnvironmentFlag
    endpoint: str | None  # None for cloud destinations, or a URL destination not set up
    verification_token: str | None  # plain text, for the `verification-token` header
    auth_credential_id: str | None
    verified: bool
    cloud_provider_settings: CloudProviderSettings | None
    delivery: DeliverySettings


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a check of a destination failed (its handshake or its cloud probe)."""

    field: str  # the destination field the user should look at
    message: str
