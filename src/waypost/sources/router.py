"""HTTP for sources: the Platform API's sources and OAuth API keys, and the calls a
source makes to get a send-API token (Redox's legacy /auth/* and Source Auth v2)."""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from waypost.access import CurrentPrincipal
from waypost.auth.router import TOKEN_ERRORS, TOKEN_PATH, answer_token_request, token_form
from waypost.auth.schemas import TokenAnswer
from waypost.http import (
    BadRequest,
    Envelope,
    MessagePayload,
    Problem,
    envelope,
    error_responses,
)
from waypost.runtime import Runtime, runtime
from waypost.sources import service
from waypost.sources.schemas import (
    ApiKeyCreate,
    ApiKeyPayload,
    ApiKeysPayload,
    AuthenticateRequest,
    NewSecretPayload,
    RefreshRequest,
    SourceCreate,
    SourcePayload,
    SourcesPayload,
    SourceUpdate,
    TokenPair,
)

router = APIRouter(prefix="/platform/v1", tags=["sources"])
# Redox's legacy source calls answer problem details on error; /oauth/token answers
# OAuth's error shape, like /v2/auth/token.
legacy_auth_router = APIRouter(tags=["source authentication"])
token_router = APIRouter(tags=["authentication"])
SOURCE_AUTH_V2_PATH: Final = "/oauth/token"

# Redox's path parameter names, snake_case inside.
EnvironmentId = Annotated[str, Path(alias="environmentId")]
SourceId = Annotated[str, Path(alias="sourceId")]
ApiKeyId = Annotated[str, Path(alias="apikeyId")]


@router.post(
    "/environments/{environmentId}/sources",
    status_code=201,
    response_model=Envelope[NewSecretPayload],
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Create a source with a legacy API key (its secret is shown once)",
)
async def create_source(
    environment_id: EnvironmentId, body: SourceCreate, principal: CurrentPrincipal, request: Request
) -> Response:
    source = await service.create_source(
        runtime(request), principal, environment_id=environment_id, name=body.name
    )
    return envelope(NewSecretPayload(source=source), status=201)


@router.get(
    "/environments/{environmentId}/sources",
    response_model=Envelope[SourcesPayload],
    responses=error_responses(401, 404),
    summary="List the sources of an environment (OAuth API keys included), in creation order",
)
async def list_sources(
    environment_id: EnvironmentId, principal: CurrentPrincipal, request: Request
) -> Response:
    rows = await service.list_sources(runtime(request), principal, environment_id=environment_id)
    return envelope(SourcesPayload(sources=[service.source_view(r) for r in rows]))


@router.get(
    "/sources/{sourceId}",
    response_model=Envelope[SourcePayload],
    responses=error_responses(401, 404),
    summary="Get a source",
)
async def get_source(
    source_id: SourceId, principal: CurrentPrincipal, request: Request
) -> Response:
    row = await service.read_source(runtime(request), principal, source_id=source_id)
    return envelope(SourcePayload(source=service.source_view(row)))


@router.patch(
    "/sources/{sourceId}",
    response_model=Envelope[SourcePayload],
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Update a source (partial: absent fields keep their values)",
)
async def update_source(
    source_id: SourceId, body: SourceUpdate, principal: CurrentPrincipal, request: Request
) -> Response:
    row = await service.update_source(runtime(request), principal, source_id=source_id, body=body)
    return envelope(SourcePayload(source=service.source_view(row)))


@router.delete(
    "/sources/{sourceId}",
    response_model=Envelope[MessagePayload],
    responses=error_responses(401, 403, 404),
    summary="Delete a source and revoke its tokens (cannot be undone)",
)
async def delete_source(
    source_id: SourceId, principal: CurrentPrincipal, request: Request
) -> Response:
    message = await service.delete_source(runtime(request), principal, source_id=source_id)
    return envelope(MessagePayload(message=message))


@router.post(
    "/sources/{sourceId}/secret",
    response_model=Envelope[NewSecretPayload],
    responses=error_responses(401, 403, 404, 409),
    summary="Issue a new secret (shown once); the old one works for 24 more hours",
)
async def rotate_secret(
    source_id: SourceId, principal: CurrentPrincipal, request: Request
) -> Response:
    source = await service.rotate_secret(runtime(request), principal, source_id=source_id)
    return envelope(NewSecretPayload(source=source))


@router.post(
    "/environments/{environmentId}/apikeys",
    status_code=201,
    response_model=Envelope[ApiKeyPayload],
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Create an OAuth API key: a source whose key is a JWKS",
)
async def create_apikey(
    environment_id: EnvironmentId, body: ApiKeyCreate, principal: CurrentPrincipal, request: Request
) -> Response:
    row = await service.create_apikey(
        runtime(request), principal, environment_id=environment_id, body=body
    )
    return envelope(ApiKeyPayload(apikey=service.apikey_view(row)), status=201)


@router.get(
    "/environments/{environmentId}/apikeys",
    response_model=Envelope[ApiKeysPayload],
    responses=error_responses(401, 404),
    summary="List the OAuth API keys of an environment",
)
async def list_apikeys(
    environment_id: EnvironmentId, principal: CurrentPrincipal, request: Request
) -> Response:
    rows = await service.list_sources(
        runtime(request), principal, environment_id=environment_id, oauth_keys_only=True
    )
    return envelope(ApiKeysPayload(apikeys=[service.apikey_view(r) for r in rows]))


@router.get(
    "/apikeys/{apikeyId}",
    response_model=Envelope[ApiKeyPayload],
    responses=error_responses(401, 404),
    summary="Get an OAuth API key",
)
async def get_apikey(
    apikey_id: ApiKeyId, principal: CurrentPrincipal, request: Request
) -> Response:
    row = await service.read_source(
        runtime(request), principal, source_id=apikey_id, oauth_key=True
    )
    return envelope(ApiKeyPayload(apikey=service.apikey_view(row)))


@router.delete(
    "/apikeys/{apikeyId}",
    response_model=Envelope[MessagePayload],
    responses=error_responses(401, 403, 404),
    summary="Delete an OAuth API key and revoke its tokens (cannot be undone)",
)
async def delete_apikey(
    apikey_id: ApiKeyId, principal: CurrentPrincipal, request: Request
) -> Response:
    message = await service.delete_source(
        runtime(request), principal, source_id=apikey_id, oauth_key=True
    )
    return envelope(MessagePayload(message=message))


# --- a source's own calls ------------------------------------------------------------------

Body = TypeVar("Body", bound=BaseModel)


async def _credentials(request: Request, model: type[Body]) -> Body:
    """The body as JSON, whatever the Content-Type says: Redox's own curl example sends
    JSON labelled as a form. A real form body is read too. Anything else is a 400 that
    names the field."""
    raw = await request.body()
    given: Any
    try:
        given = orjson.loads(raw)
    except orjson.JSONDecodeError:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise BadRequest.field("body", "must be a JSON object") from None
        given = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    if not isinstance(given, dict):
        raise BadRequest.field("body", "must be a JSON object")
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        errors = [
            (
                ".".join(str(p) for p in e["loc"]) or "body",
                "is required"
                if e["type"] == "missing"
                else "unknown field"
                if e["type"] == "extra_forbidden"
                else str(e["msg"]).removeprefix("Value error, "),
            )
            for e in exc.errors()
        ]
        problem = BadRequest.field(*errors[0])
        problem.errors = errors
        problem.detail = "; ".join(f"{f}: {m}" for f, m in errors)
        raise problem from None


def _pair(pair: TokenPair) -> Response:
    # Token answers are never cached (RFC 6749 section 5.1), and not enveloped: Redox's
    # legacy endpoints answer the bare object.
    return Response(
        orjson.dumps(pair.model_dump(mode="json", by_alias=True)),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


_CREDENTIAL_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed body; `errors` names the field", "model": Problem},
    401: {"description": "Wrong apiKey, secret or refresh token", "model": Problem},
}


@legacy_auth_router.post(
    "/auth/authenticate",
    response_model=TokenPair,
    responses=error_responses(413) | _CREDENTIAL_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": AuthenticateRequest.model_json_schema()}},
        }
    },
    summary="Legacy API key: a source's apiKey and secret for a 24-hour send-API token",
)
async def authenticate(request: Request) -> Response:
    body = await _credentials(request, AuthenticateRequest)
    pair = await service.authenticate(
        runtime(request), api_key=body.api_key, secret=body.secret, request_ip=_ip(request)
    )
    return _pair(pair)


@legacy_auth_router.post(
    "/auth/refreshToken",
    response_model=TokenPair,
    responses=error_responses(413) | _CREDENTIAL_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RefreshRequest.model_json_schema()}},
        }
    },
    summary="Legacy API key: a refresh token (used once) for a new token pair",
)
async def refresh_token(request: Request) -> Response:
    body = await _credentials(request, RefreshRequest)
    pair = await service.refresh(
        runtime(request),
        api_key=body.api_key,
        refresh_token=body.refresh_token,
        request_ip=_ip(request),
    )
    return _pair(pair)


async def exchange_on_platform_route(
    rt: Runtime, assertion: str, audience: str, request_ip: str | None
) -> tuple[str, int] | None:
    """`auth.router.ExchangeOtherClients` for /v2/auth/token, where a source's OAuth API
    key signs in too; its token opens the send API only."""
    issued = await service.exchange_assertion(
        rt, assertion, audience=audience, route=TOKEN_PATH, request_ip=request_ip
    )
    return None if issued is None else (issued.token, issued.expires_in)


async def _source_auth_v2(
    rt: Runtime, assertion: str, audience: str, request_ip: str | None
) -> tuple[str, int]:
    issued = await service.exchange_assertion(
        rt, assertion, audience=audience, route=SOURCE_AUTH_V2_PATH, request_ip=request_ip
    )
    if issued is None:
        raise service.not_a_source()
    return issued.token, issued.expires_in


@token_router.post(
    SOURCE_AUTH_V2_PATH,
    response_model=TokenAnswer,
    responses=TOKEN_ERRORS,
    openapi_extra=token_form(
        "A JWT signed by the source: with a key of its OAuth API key's JWKS (RS384 or ES384; "
        "header kid), or for a legacy API key with its secret (HS384). iss and sub the "
        "source's id; aud this URL; iat within the past 5 minutes; a jti used once."
    ),
    summary="Source Auth v2: a signed JWT for a five-minute send-API token",
)
async def source_auth_v2(request: Request) -> Response:
    return await answer_token_request(request, SOURCE_AUTH_V2_PATH, _source_auth_v2)
