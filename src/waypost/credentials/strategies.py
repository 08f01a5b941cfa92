"""The strategies Waypost can really use when it sends, and the fields each one takes.

Field names are Redox's (camelCase). A strategy lists every field it accepts, the ones it
requires, and the secret ones: those are write-only and encrypted at rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StrategyName(StrEnum):
    OAUTH2 = "OAuth_2.0_2-legged"
    SMART = "SMART_Backend"
    API_KEY = "ApiKeyHeader"
    BASIC = "BasicAuth"
    # Cloud destinations only: Azure Storage's own ways to sign a request.
    AZURE_SHARED_KEY = "AzureSharedKey"
    AZURE_SAS = "AzureSAS"


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Strategy:
    name: StrategyName
    fields: tuple[str, ...]
    required: tuple[str, ...]
    secrets: tuple[str, ...]
    # What an unset field means; responses show these values.
    defaults: dict[str, Any] = field(default_factory=dict)
    # Whether a token is fetched from `url` (and so whether `/test` has anything to do).
    fetches_token: bool = False

    @property
    def settings(self) -> tuple[str, ...]:
        """The non-secret fields, shown in responses."""
        return tuple(f for f in self.fields if f not in self.secrets)

    def describe(self) -> dict[str, list[str]]:
        return {
            "availableFields": list(self.fields),
            "requiredFields": list(self.required),
            "secretFields": list(self.secrets),
        }


STRATEGIES: dict[str, Strategy] = {
    s.name.value: s
    for s in (
        Strategy(
            StrategyName.OAUTH2,
            fields=(
                "grantType",
                "url",
                "grantTypeName",
                "clientIdName",
                "clientSecretName",
                "clientId",
                "clientSecret",
                "accessTokenName",
                "expiresFieldName",
                "audience",
                "scopes",
                "contentType",
                "noBasic",
                "resource",
                "customFieldName",
                "customFieldValue",
                "defaultExpirationSeconds",
            ),
            required=("url", "clientId", "clientSecret"),
            secrets=("clientSecret",),
            defaults={
                "grantType": CLIENT_CREDENTIALS,
                "grantTypeName": "grant_type",
                "clientIdName": "client_id",
                "clientSecretName": "client_secret",
                "accessTokenName": "access_token",
                "expiresFieldName": "expires_in",
                "contentType": FORM,
                "noBasic": False,
            },
            fetches_token=True,
        ),
        Strategy(
            StrategyName.SMART,
            fields=("grantType", "url", "clientId", "privateKey", "keyId", "scopes"),
            required=("url", "clientId", "privateKey", "scopes"),
            secrets=("privateKey",),
            defaults={"grantType": CLIENT_CREDENTIALS},
            fetches_token=True,
        ),
        Strategy(
            StrategyName.API_KEY,
            fields=("headerName", "apiKeyValue"),
            required=("headerName", "apiKeyValue"),
            secrets=("apiKeyValue",),
        ),
        Strategy(
            StrategyName.BASIC,
            fields=("username", "password"),
            required=("username", "password"),
            secrets=("password",),
        ),
        Strategy(
            StrategyName.AZURE_SHARED_KEY,
            fields=("accountKey",),
            required=("accountKey",),
            secrets=("accountKey",),
        ),
        Strategy(
            StrategyName.AZURE_SAS,
            fields=("sasToken",),
            required=("sasToken",),
            secrets=("sasToken",),
        ),
    )
}

# What each kind of destination can send with. Azure Storage signs with its own key or
# SAS, or takes an Entra ID token (OAuth client credentials); a URL receiver takes headers.
URL_STRATEGIES = frozenset(
    {StrategyName.OAUTH2, StrategyName.SMART, StrategyName.API_KEY, StrategyName.BASIC}
)
CLOUD_STRATEGIES = frozenset(
    {StrategyName.OAUTH2, StrategyName.AZURE_SHARED_KEY, StrategyName.AZURE_SAS}
)


def kind_refusal(strategy: StrategyName, *, cloud: bool) -> str | None:
    """Why a credential of this strategy cannot serve a cloud (or URL) destination; None
    when it can."""
    if cloud and strategy not in CLOUD_STRATEGIES:
        return (
            f"a {strategy} credential cannot sign Azure Storage requests; a cloud destination "
            "takes OAuth_2.0_2-legged (Entra ID), AzureSharedKey or AzureSAS"
        )
    if not cloud and strategy not in URL_STRATEGIES:
        return (
            f"a {strategy} credential signs Azure Storage requests for cloud destinations "
            "only; a URL destination takes OAuth_2.0_2-legged, SMART_Backend, ApiKeyHeader "
            "or BasicAuth"
        )
    return None


# Every secret field of every strategy, for the `has<Field>` flags of the response schema.
SECRET_FIELDS = tuple(dict.fromkeys(f for s in STRATEGIES.values() for f in s.secrets))

# Redox lists these for its OAuth strategies; Waypost refuses them there, saying why.
CLIENT_CREDENTIALS_ONLY = (
    "Waypost fetches OAuth tokens with client_credentials only; "
    "the password grant (username and password) is not supported"
)


def has_flag(secret_field: str) -> str:
    """`clientSecret` -> `hasClientSecret`, as Redox names them."""
    return "has" + secret_field[0].upper() + secret_field[1:]
