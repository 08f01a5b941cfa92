"""Wire schemas for reading logs, with Redox's field names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, JsonValue, StringConstraints

from waypost import clock
from waypost.fields import storable
from waypost.http import ResponseModel, WireModel

LogStatus = Literal["pending", "succeeded", "failed"]
LogType = Literal["send", "request"]


def _instant(value: str) -> str:
    """The stored form of an ISO 8601 time (no offset: UTC), so it compares with the
    stored times as text."""
    try:
        return clock.format(clock.parse(storable(value)))
    except (ValueError, OverflowError):
        raise ValueError(
            "must be an ISO 8601 date-time, such as 2026-01-31T23:59:59.999Z"
        ) from None


Instant = Annotated[str, AfterValidator(_instant)]
Text = Annotated[str, StringConstraints(max_length=255), AfterValidator(storable)]


class LogSearch(WireModel):
    """Redox's search filters; every one is optional and they combine with AND. Times
    are inclusive bounds."""

    data_model: Text | None = Field(
        default=None, description='Matched without spaces: "Clinical Summary" finds both forms.'
    )
    event_type: Text | None = None
    source_id: Text | None = None
    destination_id: Text | None = None
    status: LogStatus | None = None
    type: LogType | None = None
    created_after: Instant | None = None
    created_before: Instant | None = None
    updated_after: Instant | None = None
    updated_before: Instant | None = None
    data_mode: Literal["realtime", "backfill"] | None = Field(
        default=None,
        description="Accepted for Redox compatibility. All Waypost traffic is real-time, so "
        "`backfill` finds nothing.",
    )
    service_region: Text | None = Field(
        default=None, description="Accepted for Redox compatibility and ignored (one region)."
    )
    facility_code: Text | None = Field(
        default=None, description="Accepted for Redox compatibility and ignored."
    )


class LogParty(ResponseModel):
    id: str
    name: str


class AttemptOut(ResponseModel):
    id: str
    attempt_at: str
    status: Literal["succeeded", "failed"]
    http_status: int | None
    error: str | None
    duration_ms: int


class AttemptsOut(ResponseModel):
    total: int
    latest: AttemptOut | None


class AttemptsWithAllOut(AttemptsOut):
    all: list[AttemptOut] = Field(description="Every attempt, oldest first.")


def _absent(value: object) -> bool:
    return value is None


class LogOut(ResponseModel):
    id: str
    type: LogType
    status: LogStatus
    data_model: str
    event_type: str
    test: bool
    source: LogParty
    destination: LogParty
    created_at: str
    updated_at: str
    attempts: AttemptsOut
    failure_reason: str | None = Field(
        default=None, exclude_if=_absent, description="Why the log failed; only when failed."
    )
    file_name: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="Cloud destinations: the blob the message was written to, alone or as "
        "one line of a batch file.",
    )


class LogDetailOut(LogOut):
    attempts: AttemptsWithAllOut
    payload: dict[str, JsonValue] | None = Field(
        default=None,
        exclude_if=_absent,
        description="The message as the destination received it (Meta.Source, "
        "Meta.Destinations and Meta.Logs filled in). Engineer and support roles only.",
    )
    response: JsonValue = Field(
        default=None,
        exclude_if=_absent,
        description="A request log's answer from the destination. Engineer and support roles only.",
    )


class LogsPayload(ResponseModel):
    logs: list[LogOut]


class LogPayload(ResponseModel):
    result: LogDetailOut = Field(description="Redox's current shape: the log under `result`.")
