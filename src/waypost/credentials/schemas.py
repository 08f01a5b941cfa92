"""Wire schemas with Redox's field names. Format rules live here; rules that need the
strategy or the environment (required fields, HTTPS outside Development) live in the service.

Create and update bodies take every field of every strategy: which of them a credential
may use depends on its strategy, which the service checks, naming the field.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal
from uuid import UUID

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    StrictInt,
    WithJsonSchema,
)

from waypost.credentials.strategies import StrategyName
from waypost.fields import HttpUrl, Name, has_control, storable
from waypost.http import ResponseModel, WireModel

MAX_PRIVATE_KEY_LENGTH = 16 * 1024
MAX_EXPIRATION_SECONDS = 366 * 24 * 3600
MIN_RSA_BITS = 2048

# Checked with fullmatch: `$` alone would let a trailing newline through.
_FIELD_NAME = re.compile(r"[\x21-\x7e]{1,255}")
# RFC 9110 token characters: what an HTTP header name may hold.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,255}")
# Visible ASCII, inner spaces allowed: a value that travels in an HTTP header.
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,4094}[\x21-\x7e])?")
# Headers that carry the message itself or the connection; an API key must not replace them.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "verification-token",
    }
)


def _text(limit: int) -> AfterValidator:
    """Single-line text of 1 to `limit` characters. Surrounding whitespace is refused
    rather than trimmed: pasted into a secret, it is a classic cause of failed logins."""

    def check(value: str) -> str:
        storable(value)
        if not 1 <= len(value) <= limit:
            raise ValueError(f"must be 1 to {limit} characters")
        if has_control(value):
            raise ValueError("must not contain control characters or line breaks")
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        return value

    return AfterValidator(check)


def _field_name(value: str) -> str:
    if not _FIELD_NAME.fullmatch(value):
        raise ValueError("must be 1 to 255 visible ASCII characters (no spaces)")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be an HTTP header name: 1 to 255 letters, digits or !#$%&'*+-.^_`|~")
    if value.lower() in _RESERVED_HEADERS:
        raise ValueError(f"{value} is set by Waypost itself; choose another header")
    return value


def _header_value(value: str) -> str:
    if not _HEADER_VALUE.fullmatch(value):
        raise ValueError(
            "must be 1 to 4096 visible ASCII characters (inner spaces allowed; "
            "no surrounding whitespace)"
        )
    return value


def _username(value: str) -> str:
    if ":" in value:
        raise ValueError("must not contain ':' (HTTP Basic separates user and password with it)")
    return value


def _no_basic(value: object) -> bool:
    # Redox sends noBasic as the string "true" or "false"; a JSON boolean is fine too.
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError('must be true or false (a boolean, or the string "true" or "false")')


def _account_key(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("must be the storage account key, in base64") from None
    if not decoded:
        raise ValueError("must be the storage account key, in base64")
    return value


def _sas_token(value: str) -> str:
    token = value.removeprefix("?")
    if "sig=" not in token or any(c.isspace() for c in token):
        raise ValueError("must be a shared access signature (a query string with sig=...)")
    return token


def signing_algorithm(private_key_pem: str) -> str:
    """The SMART Backend Services algorithm for a key: RS384 for RSA, ES384 for P-384."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except TypeError:
        raise ValueError("must be an unencrypted PEM private key (no passphrase)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            "must be a PEM private key (-----BEGIN PRIVATE KEY----- ...) that parses"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key must have at least {MIN_RSA_BITS} bits")
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise ValueError("an EC key must be on the P-384 curve (ES384)")
        return "ES384"
    raise ValueError("must be an RSA key (RS384) or an EC P-384 key (ES384)")


def _private_key(value: str) -> str:
    storable(value)
    if len(value) > MAX_PRIVATE_KEY_LENGTH:
        raise ValueError(f"must be at most {MAX_PRIVATE_KEY_LENGTH} characters")
    value = value.strip()
    signing_algorithm(value)
    return value + "\n"


NoBasic = Annotated[
    bool,
    PlainValidator(_no_basic),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}),
]
FieldName = Annotated[str, AfterValidator(_field_name)]
ShortText = Annotated[str, _text(255)]
Text = Annotated[str, _text(2048)]
Secret = Annotated[str, _text(4096)]
StrategyField = Literal[
    "OAuth_2.0_2-legged", "SMART_Backend", "ApiKeyHeader", "BasicAuth", "AzureSharedKey", "AzureSAS"
]


class CredentialFields(WireModel):
    """Every strategy field. Which ones a credential takes depends on its strategy."""

    grant_type: Literal["client_credentials"] | None = None
    url: HttpUrl | None = Field(default=None, description="The token URL.")
    grant_type_name: FieldName | None = None
    client_id_name: FieldName | None = None
    client_secret_name: FieldName | None = None
    client_id: Annotated[str, _text(1024)] | None = None
    client_secret: Secret | None = Field(default=None, description="Write-only.")
    access_token_name: FieldName | None = None
    expires_field_name: FieldName | None = None
    audience: Text | None = None
    scopes: Text | None = Field(default=None, description="Sent as `scope`.")
    content_type: Literal["application/x-www-form-urlencoded", "application/json"] | None = None
    no_basic: NoBasic | None = Field(
        default=None,
        description="true: client id and secret go in the body; false: in HTTP Basic.",
    )
    resource: Text | None = None
    custom_field_name: FieldName | None = None
    custom_field_value: Text | None = None
    default_expiration_seconds: (
        Annotated[StrictInt, Field(ge=1, le=MAX_EXPIRATION_SECONDS)] | None
    ) = Field(default=None, description="Used when the token answer has no expiry.")
    private_key: Annotated[str, AfterValidator(_private_key)] | None = Field(
        default=None,
        description="Write-only. PEM; RSA (RS384) or EC P-384 (ES384).",
    )
    key_id: ShortText | None = Field(default=None, description="The `kid` of the client assertion.")
    header_name: Annotated[str, AfterValidator(_header_name)] | None = None
    api_key_value: Annotated[str, AfterValidator(_header_value)] | None = Field(
        default=None, description="Write-only."
    )
    username: Annotated[ShortText, AfterValidator(_username)] | None = None
    password: Annotated[str, _text(1024)] | None = Field(default=None, description="Write-only.")
    account_key: Annotated[str, AfterValidator(_account_key)] | None = Field(
        default=None, description="Write-only. The storage account's access key (base64)."
    )
    sas_token: Annotated[str, AfterValidator(_sas_token)] | None = Field(
        default=None,
        description="Write-only. A shared access signature for the container, with or "
        "without its leading `?`.",
    )


class CredentialCreate(CredentialFields):
    environment_id: UUID
    name: Name
    auth_strategy: StrategyField
    organization: StrictInt | None = Field(
        default=None, description="Optional; when given, must be your organization's id."
    )


class CredentialUpdate(CredentialFields):
    """Partial: a field that is absent keeps its value; null clears an optional one.
    A secret that is sent replaces the stored one."""

    name: Name | None = None
    auth_strategy: StrategyField | None = Field(
        default=None, description="Optional; a credential's strategy cannot change."
    )
    environment_id: UUID | None = Field(
        default=None, description="Optional; a credential cannot move to another environment."
    )
    organization: StrictInt | None = None


# --- responses ---------------------------------------------------------------------------


class _CredentialOut(ResponseModel):
    id: str
    name: str
    environment_id: str
    organization: int
    created_at: str
    updated_at: str


# A credential shows its strategy's non-secret fields (null when unset, defaults filled
# in) and `has<Field>` for each of its secret fields. Secrets never come back.
class OAuth2CredentialOut(_CredentialOut):
    auth_strategy: Literal["OAuth_2.0_2-legged"]
    grant_type: str | None
    url: str | None
    grant_type_name: str | None
    client_id_name: str | None
    client_secret_name: str | None
    client_id: str | None
    access_token_name: str | None
    expires_field_name: str | None
    audience: str | None
    scopes: str | None
    content_type: str | None
    no_basic: bool | None
    resource: str | None
    custom_field_name: str | None
    custom_field_value: str | None
    default_expiration_seconds: int | None
    has_client_secret: bool


class SmartCredentialOut(_CredentialOut):
    auth_strategy: Literal["SMART_Backend"]
    grant_type: str | None
    url: str | None
    client_id: str | None
    key_id: str | None
    scopes: str | None
    has_private_key: bool


class ApiKeyCredentialOut(_CredentialOut):
    auth_strategy: Literal["ApiKeyHeader"]
    header_name: str | None
    has_api_key_value: bool


class BasicCredentialOut(_CredentialOut):
    auth_strategy: Literal["BasicAuth"]
    username: str | None
    has_password: bool


class AzureSharedKeyCredentialOut(_CredentialOut):
    auth_strategy: Literal["AzureSharedKey"]
    has_account_key: bool


class AzureSasCredentialOut(_CredentialOut):
    auth_strategy: Literal["AzureSAS"]
    has_sas_token: bool


AnyCredentialOut = (
    OAuth2CredentialOut
    | SmartCredentialOut
    | ApiKeyCredentialOut
    | BasicCredentialOut
    | AzureSharedKeyCredentialOut
    | AzureSasCredentialOut
)
AuthCredentialOut = Annotated[AnyCredentialOut, Field(discriminator="auth_strategy")]
# Each strategy's view; a test checks that its fields are the strategy's.
CREDENTIAL_OUT: dict[StrategyName, type[AnyCredentialOut]] = {
    StrategyName.OAUTH2: OAuth2CredentialOut,
    StrategyName.SMART: SmartCredentialOut,
    StrategyName.API_KEY: ApiKeyCredentialOut,
    StrategyName.BASIC: BasicCredentialOut,
    StrategyName.AZURE_SHARED_KEY: AzureSharedKeyCredentialOut,
    StrategyName.AZURE_SAS: AzureSasCredentialOut,
}


class AuthCredentialPayload(ResponseModel):
    auth_credential: AuthCredentialOut


class AuthCredentialsPayload(ResponseModel):
    credentials: list[AuthCredentialOut]


class StrategyOut(ResponseModel):
    available_fields: list[str]
    required_fields: list[str]
    secret_fields: list[str]


class StrategiesPayload(ResponseModel):
    strategies: dict[str, StrategyOut]


class CredentialTestOut(ResponseModel):
    """The outcome of fetching a token now. Never the token itself."""

    success: bool
    status: int | None = Field(description="The token server's HTTP status, if it answered.")
    error: str | None = Field(description="Why it failed, in words; null on success.")
    expires_in: int | None = Field(description="Seconds the token is valid for, on success.")
