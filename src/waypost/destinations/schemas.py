"""Wire schemas with Redox's field names. Format rules live here; rules that need the
environment (HTTPS outside Development, one type per destination) live in the service."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
)

from waypost.destinations.delivery_settings import (
    DEFAULT_LANES,
    DEFAULT_UNORDERED,
    MAX_BATCH_MESSAGES,
    MAX_BATCH_SECONDS,
    MAX_CONCURRENCY,
    MAX_ORDERING_KEY_LENGTH,
    MAX_RETRY_SECONDS,
    DeliveryMode,
    DeliverySettings,
)
from waypost.destinations.store import DestinationRow
from waypost.fields import HttpUrl, Name, StorableJson, storable
from waypost.http import ResponseModel, WireModel
from waypost.kinds import EnvironmentFlag

# Checked with fullmatch: `$` alone would let a trailing newline through.
_STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(?:-[a-z0-9]+)*")
# Visible ASCII only: the token travels in an HTTP header on every request.
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")
# RFC 6901, at least one reference token: "/" then anything but "~" unless escaped.
_JSON_POINTER = re.compile(r"(?:/(?:[^~/]|~[01])*)+")


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


def _json_pointer(value: str) -> str:
    if len(value) > MAX_ORDERING_KEY_LENGTH:
        raise ValueError(f"must be at most {MAX_ORDERING_KEY_LENGTH} characters")
    storable(value)
    if not _JSON_POINTER.fullmatch(value):
        raise ValueError(
            "must be an RFC 6901 JSON pointer such as /Patient/Identifiers/0/ID: it starts "
            "with '/', and '~' appears only as ~0 or ~1"
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


# The rules, also in the OpenAPI document (ECMA-262 patterns, equal to the checks above).
VerificationToken = Annotated[
    str,
    AfterValidator(_verification_token),
    WithJsonSchema({"type": "string", "pattern": "^[\\x21-\\x7e]{1,512}$"}),
]
StorageAccountName = Annotated[
    str,
    AfterValidator(_storage_account),
    WithJsonSchema({"type": "string", "pattern": "^[a-z0-9]{3,24}$"}),
]
ContainerName = Annotated[
    str,
    AfterValidator(_container),
    WithJsonSchema(
        {"type": "string", "minLength": 3, "maxLength": 63, "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"}
    ),
]
FileNamePrefix = Annotated[
    str, AfterValidator(_file_name_prefix), WithJsonSchema({"type": "string", "maxLength": 512})
]


class EnvironmentRef(WireModel):
    id: Annotated[str, AfterValidator(storable)] | None = None
    environment_flag: EnvironmentFlag | None = None


class StorageSettings(WireModel):
    storage_account_name: StorageAccountName
    container_name: ContainerName
    file_name_prefix: FileNamePrefix | None = None


class CloudProviderSettings(WireModel):
    type_id: Literal["azure"]
    product_id: Literal["databricks"]
    settings: StorageSettings


class StorageSettingsPatch(WireModel):
    """Partial: a key that is absent keeps its value; null clears `fileNamePrefix`."""

    storage_account_name: StorageAccountName | None = None
    container_name: ContainerName | None = None
    file_name_prefix: FileNamePrefix | None = None


class CloudProviderSettingsPatch(WireModel):
    """A cloud destination's settings, changed in part; the type stays."""

    type_id: Literal["azure"] | None = None
    product_id: Literal["databricks"] | None = None
    settings: StorageSettingsPatch | None = None


class SetupState(WireModel):
    step: Annotated[str, StringConstraints(max_length=255), AfterValidator(storable)]
    # A draft copy of the destination, kept as the client sent it.
    destination: Annotated[dict[str, Any], StorableJson] | None = None


class BatchIn(WireModel):
    """Both keys are required: a file is written when it holds `maxMessages`, or when its
    first message has waited `maxSeconds`, whichever comes first."""

    max_messages: Annotated[StrictInt, Field(ge=1, le=MAX_BATCH_MESSAGES)] = Field(
        description="The most messages in one file."
    )
    max_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_BATCH_SECONDS)] = Field(
        description="The longest a message waits for its file to fill."
    )


class DeliveryIn(WireModel):
    """Partial on PATCH: a key that is absent keeps its value; null restores its default."""

    mode: DeliveryMode | None = Field(
        default=None, description="fifo (the default for URL destinations) or unordered."
    )
    concurrency: Annotated[StrictInt, Field(ge=1, le=MAX_CONCURRENCY)] | None = Field(
        default=None,
        description="Messages in flight: lanes in parallel with an orderingKey (default "
        f"{DEFAULT_LANES}), messages in unordered mode (default {DEFAULT_UNORDERED}); "
        "exactly 1 in plain fifo.",
    )
    ordering_key: Annotated[str, AfterValidator(_json_pointer)] | None = Field(
        default=None,
        description="fifo only: an RFC 6901 JSON pointer into the message; messages with "
        "the same value there keep their order, others may pass.",
    )
    max_retry_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_RETRY_SECONDS)] | None = Field(
        default=None, description="After that long a message fails; null: no limit."
    )
    batch: BatchIn | None = Field(
        default=None,
        description="Cloud destinations in unordered mode: write several messages per file "
        "(newline-delimited JSON) instead of one file each; null: one file per message.",
    )


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
    delivery: DeliveryIn | None = None


class DestinationUpdate(WireModel):
    """Partial: a field that is absent keeps its value; null clears it (not `name`)."""

    name: Name | None = None
    auth_credential: UUID | None = None
    endpoint: HttpUrl | None = None
    verification_token: VerificationToken | None = Field(default=None, description="Write-only.")
    cloud_provider_settings: CloudProviderSettingsPatch | None = None
    delivery: DeliveryIn | None = Field(
        default=None, description="The keys given replace the stored ones; null: every default."
    )


class VerifyRequest(WireModel):
    """Fields given here are saved before the handshake runs."""

    endpoint: HttpUrl | None = None
    verification_token: VerificationToken | None = Field(default=None, description="Write-only.")
    verification_method: Literal["GET", "POST"] | None = Field(
        default=None, description="How the challenge is sent; POST when never set."
    )


class DestinationEnvironment(ResponseModel):
    id: str
    environment_flag: EnvironmentFlag


class VerificationOut(ResponseModel):
    status: Literal["verified", "failed"]
    checked_at: str
    method: Literal["GET", "POST", "blob-probe"] = Field(
        description="How it was checked: the challenge's HTTP method, or `blob-probe` for a "
        "cloud destination (a blob written, read back and deleted)."
    )
    # Only a failure says why; a success has no `error` key at all.
    error: str | None = Field(default=None, exclude_if=lambda error: error is None)


class BatchOut(ResponseModel):
    max_messages: int
    max_seconds: int


class DeliveryOut(ResponseModel):
    """The effective settings: every default filled in."""

    mode: DeliveryMode
    concurrency: int
    ordering_key: str | None
    max_retry_seconds: int | None
    batch: BatchOut | None

    @classmethod
    def of(cls, settings: DeliverySettings) -> DeliveryOut:
        batch = settings.batch
        return cls(
            mode=settings.mode,
            concurrency=settings.concurrency,
            ordering_key=settings.ordering_key,
            max_retry_seconds=settings.max_retry_seconds,
            batch=None
            if batch is None
            else BatchOut(max_messages=batch.max_messages, max_seconds=batch.max_seconds),
        )


class DestinationOut(ResponseModel):
    """A destination as every route shows it. The verification token stays inside:
    only whether there is one."""

    id: str
    name: str
    auth_credential: str | None
    endpoint: str | None
    environment: DestinationEnvironment
    cloud_provider_settings: dict[str, JsonValue] | None
    setup_state: dict[str, JsonValue] | None
    verified: bool
    verification: VerificationOut | None
    verification_method: Literal["GET", "POST"] | None
    has_verification_token: bool
    delivery: DeliveryOut
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, row: DestinationRow, flag: EnvironmentFlag) -> DestinationOut:
        return cls(
            id=row.id,
            name=row.name,
            auth_credential=row.auth_credential_id,
            endpoint=row.endpoint,
            environment=DestinationEnvironment(id=row.environment_id, environment_flag=flag),
            cloud_provider_settings=row.cloud_provider_settings,
            setup_state=row.setup_state,
            verified=row.verified,
            verification=_verification(row),
            verification_method=row.verification_method,
            has_verification_token=row.verification_token is not None,
            delivery=DeliveryOut.of(row.delivery_settings()),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _verification(row: DestinationRow) -> VerificationOut | None:
    if row.verification_status is None:
        return None
    return VerificationOut(
        status=row.verification_status,
        checked_at=row.verification_checked_at,
        method="blob-probe" if row.is_cloud else row.verification_method,
        error=row.verification_error if row.verification_status == "failed" else None,
    )


class DestinationPayload(ResponseModel):
    destination: DestinationOut


class DestinationsPayload(ResponseModel):
    destinations: list[DestinationOut]
