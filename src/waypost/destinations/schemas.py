"""Wire schemas with Redox's field names. Format rules live here; rules that need the
environment (HTTPS outside Development, one type per destination) live in the service."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from waypost.fields import HttpUrl, Name, StorableJson, storable
from waypost.http import Meta, WireModel
from waypost.organizations.service import EnvironmentFlag

# Checked with fullmatch: `$` alone would let a trailing newline through.
_STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(?:-[a-z0-9]+)*")
# Visible ASCII only: the token travels in an HTTP header on every request.
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")


def _verification_token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("must be 1 to 512 visible ASCII characters (no spaces)")
    return value


def _storage_account(value: str) -> str:
    if not _STORAGE_ACCOUNT.fullmatch(value):
        raise ValueError("must be 3 to 24 lowercase letters and digits")
    return value


def _container(value: str) -> str:
    if not _CONTAINER.fullmatch(value):
        raise ValueError(
            "must be 3 to 63 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return value


def _file_name_prefix(value: str) -> str:
    if len(value) > 512:
        raise ValueError("must be at most 512 characters")
    if value.startswith("/"):
        raise ValueError("must not start with '/'")
    storable(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in value):
        raise ValueError("must not contain control characters or backslashes")
    segments = value.split("/")
    # The last segment is the start of a file name and may be empty ("exports/").
    if any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1] in (".", ".."):
        raise ValueError("must not contain empty, '.' or '..' path segments")
    return value


VerificationToken = Annotated[str, AfterValidator(_verification_token)]


class EnvironmentRef(WireModel):
    id: Annotated[str, AfterValidator(storable)] | None = None
    environment_flag: EnvironmentFlag | None = None


class StorageSettings(WireModel):
    storage_account_name: Annotated[str, AfterValidator(_storage_account)]
    container_name: Annotated[str, AfterValidator(_container)]
    file_name_prefix: Annotated[str, AfterValidator(_file_name_prefix)] | None = None


class CloudProviderSettings(WireModel):
    type_id: Literal["azure"]
    product_id: Literal["databricks"]
    settings: StorageSettings


class SetupState(WireModel):
    step: Annotated[str, StringConstraints(max_length=255), AfterValidator(storable)]
    # A draft copy of the destination, kept as the client sent it.
    destination: Annotated[dict[str, Any], StorableJson] | None = None


class DestinationCreate(WireModel):
    id: UUID | None = None
    name: Name
    auth_credential: UUID | None = None
    endpoint: HttpUrl | None = None
    environment: EnvironmentRef | None = None
    cloud_provider_settings: CloudProviderSettings | None = None
    setup_state: SetupState | None = None
    verification_token: VerificationToken | None = Field(
        default=None, description="Write-only. Sent as the `verification-token` header."
    )


class DestinationUpdate(WireModel):
    """Partial: a field that is absent keeps its value; null clears it (not `name`)."""

    name: Name | None = None
    auth_credential: UUID | None = None
    endpoint: HttpUrl | None = None
    verification_token: VerificationToken | None = Field(default=None, description="Write-only.")


class VerifyRequest(WireModel):
    """Fields given here are saved before the handshake runs."""

    endpoint: HttpUrl | None = None
    verification_token: VerificationToken | None = Field(default=None, description="Write-only.")
    verification_method: Literal["GET", "POST"] | None = Field(
        default=None, description="How the challenge is sent; POST when never set."
    )


class EnvironmentOut(BaseModel):
    id: str
    environmentFlag: EnvironmentFlag


class VerificationOut(BaseModel):
    status: Literal["verified", "failed"]
    checkedAt: str
    method: Literal["GET", "POST"]
    error: str | None = None


class DestinationOut(BaseModel):
    id: str
    name: str
    authCredential: str | None
    endpoint: str | None
    environment: EnvironmentOut
    cloudProviderSettings: dict[str, Any] | None
    setupState: dict[str, Any] | None
    verified: bool
    verification: VerificationOut | None
    verificationMethod: Literal["GET", "POST"] | None
    hasVerificationToken: bool
    createdAt: str
    updatedAt: str


class DestinationPayload(BaseModel):
    destination: DestinationOut


class DestinationEnvelope(BaseModel):
    meta: Meta
    payload: DestinationPayload


class DestinationsPayload(BaseModel):
    destinations: list[DestinationOut]


class DestinationsEnvelope(BaseModel):
    meta: Meta
    payload: DestinationsPayload


class MessagePayload(BaseModel):
    message: str


class MessageEnvelope(BaseModel):
    meta: Meta
    payload: MessagePayload
