"""Wire schemas for subscriptions, with Redox's field names."""

from __future__ import annotations

from uuid import UUID

from waypost.fields import Name
from waypost.http import ResponseModel, WireModel
from waypost.kinds import EnvironmentFlag


class IdRef(WireModel):
    id: UUID


class SubscriptionCreate(WireModel):
    source: IdRef
    destination: IdRef
    # Kept as given; routing matches it without spaces ("Clinical Summary" is
    # "ClinicalSummary").
    data_model: Name


class SubscriptionEnd(ResponseModel):
    id: str
    name: str


class SubscriptionEnvironment(ResponseModel):
    id: str
    environment_flag: EnvironmentFlag


class SubscriptionOut(ResponseModel):
    id: str
    source: SubscriptionEnd
    destination: SubscriptionEnd
    data_model: str
    environment: SubscriptionEnvironment
    created_at: str


class SubscriptionPayload(ResponseModel):
    subscription: SubscriptionOut


class SubscriptionsPayload(ResponseModel):
    subscriptions: list[SubscriptionOut]
