"""Wire schemas with Redox's field names for sources, OAuth API keys and the legacy token
calls. Format rules live here; rules that need the environment live in the service."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from waypost.fields import HttpUrl, Name, StorableJson, storable
from waypost.http import ResponseModel, WireModel
from waypost.kinds import EnvironmentFlag

# What a caller pastes as a key or token: one line, bounded, storable.
Credential = Annotated[
    str, StringConstraints(min_length=1, max_length=512), AfterValidator(storable)
]


class SourceCreate(WireModel):
    name: Name


class SourceUpdate(WireModel):
    """Partial: a field that is absent keeps its value."""

    name: Name | None = None


class ApiKeyCreate(WireModel):
    """An OAuth API key: its public keys inline (`jwkSet`) or at a URL (`jwksURL`)."""

    name: Name
    jwks_url: HttpUrl | None = Field(
        default=None,
        alias="jwksURL",
        description="Fetched when a token is requested; https outside Development.",
    )
    jwk_set: Annotated[dict[str, Any], StorableJson] | None = Field(
        default=None, alias="jwkSet", description='{"keys": [...]}: public keys, each with a kid.'
    )


class AuthenticateRequest(WireModel):
    api_key: Credential
    secret: Credential


class RefreshRequest(WireModel):
    api_key: Credential
    refresh_token: Credential


class SourceEnvironment(ResponseModel):
    id: str
    environment_flag: EnvironmentFlag


class SourceOut(ResponseModel):
    id: str = Field(description="The source's client id; for a legacy key also its apiKey.")
    name: str
    environment: SourceEnvironment
    api_key: str | None = Field(description="The legacy API key; null for an OAuth API key.")
    has_secret: bool
    created_at: str
    updated_at: str


class SourceWithSecret(SourceOut):
    secret: str = Field(description="Shown in this answer only; Waypost keeps no readable copy.")


class SourcePayload(ResponseModel):
    source: SourceOut


class NewSecretPayload(ResponseModel):
    source: SourceWithSecret


class SourcesPayload(ResponseModel):
    sources: list[SourceOut]


class ApiKeyOut(ResponseModel):
    id: str = Field(description="The client id: iss and sub of the client assertion.")
    name: str
    jwks_url: str | None = Field(alias="jwksURL")
    jwk_set: dict[str, Any] | None = Field(alias="jwkSet")
    environment: SourceEnvironment
    created_at: str
    updated_at: str


class ApiKeyPayload(ResponseModel):
    apikey: ApiKeyOut


class ApiKeysPayload(ResponseModel):
    apikeys: list[ApiKeyOut]


class TokenPair(ResponseModel):
    """Redox's legacy answer: an access token for 24 hours and a single-use refresh token."""

    access_token: str
    expires: str = Field(description="When the access token expires, e.g. 2015-03-25T20:52:35.000Z")
    refresh_token: str
