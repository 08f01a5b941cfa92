"""HTTP for auth credentials: parse, call one service function, wrap in the envelope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from waypost.access import CurrentPrincipal
from waypost.credentials import service
from waypost.credentials.schemas import (
    AuthCredentialPayload,
    AuthCredentialsPayload,
    CredentialCreate,
    CredentialTestOut,
    CredentialUpdate,
    StrategiesPayload,
)
from waypost.http import Envelope, MessagePayload, envelope, error_responses
from waypost.runtime import runtime

router = APIRouter(prefix="/platform/v1", tags=["auth credentials"])

EnvironmentId = Annotated[str, Path(alias="environmentId")]
CredentialId = Annotated[str, Path(alias="authCredentialId")]


# Before /authcredentials/{authCredentialId}, which would otherwise match "strategies".
@router.get(
    "/authcredentials/strategies",
    response_model=Envelope[StrategiesPayload],
    responses=error_responses(401),
    summary="The authentication strategies Waypost can use, and their fields",
)
async def list_strategies(principal: CurrentPrincipal) -> Response:
    return envelope(StrategiesPayload(strategies=service.strategies()))


@router.post(
    "/authcredentials",
    status_code=201,
    response_model=Envelope[AuthCredentialPayload],
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Create an auth credential",
    description="The fields a strategy takes are listed by `GET /authcredentials/strategies`. "
    "Secret fields are write-only: responses show `has<Field>` instead.",
)
async def create_credential(
    body: CredentialCreate, principal: CurrentPrincipal, request: Request
) -> Response:
    credential = await service.create(runtime(request), principal=principal, body=body)
    return envelope(AuthCredentialPayload(auth_credential=credential), status=201)


@router.get(
    "/environments/{environmentId}/authcredentials",
    response_model=Envelope[AuthCredentialsPayload],
    responses=error_responses(401, 404),
    summary="List an environment's auth credentials, in creation order",
)
async def list_credentials(
    environment_id: EnvironmentId, principal: CurrentPrincipal, request: Request
) -> Response:
    credentials = await service.list_in_environment(
        runtime(request), principal=principal, environment_id=environment_id
    )
    return envelope(AuthCredentialsPayload(credentials=credentials))


@router.get(
    "/authcredentials/{authCredentialId}",
    response_model=Envelope[AuthCredentialPayload],
    responses=error_responses(401, 404),
    summary="Get an auth credential",
)
async def get_credential(
    credential_id: CredentialId, principal: CurrentPrincipal, request: Request
) -> Response:
    credential = await service.get(
        runtime(request), principal=principal, credential_id=credential_id
    )
    return envelope(AuthCredentialPayload(auth_credential=credential))


@router.patch(
    "/authcredentials/{authCredentialId}",
    response_model=Envelope[AuthCredentialPayload],
    responses=error_responses(400, 401, 403, 404, 413, 422),
    summary="Update an auth credential (partial; a secret sent replaces the stored one)",
)
async def update_credential(
    credential_id: CredentialId,
    body: CredentialUpdate,
    principal: CurrentPrincipal,
    request: Request,
) -> Response:
    credential = await service.update(
        runtime(request), principal=principal, credential_id=credential_id, body=body
    )
    return envelope(AuthCredentialPayload(auth_credential=credential))


@router.delete(
    "/authcredentials/{authCredentialId}",
    response_model=Envelope[MessagePayload],
    responses=error_responses(401, 403, 404, 409),
    summary="Delete an auth credential that no destination uses",
    description="409 when destinations still use it; `detail` names them.",
)
async def delete_credential(
    credential_id: CredentialId, principal: CurrentPrincipal, request: Request
) -> Response:
    message = await service.delete(
        runtime(request), principal=principal, credential_id=credential_id
    )
    return envelope(MessagePayload(message=message))


@router.post(
    "/authcredentials/{authCredentialId}/test",
    response_model=Envelope[CredentialTestOut],
    responses=error_responses(401, 403, 404, 422),
    summary="Fetch a token with the credential now, and report how it went (Waypost addition)",
    description="For OAuth_2.0_2-legged and SMART_Backend credentials. The answer is 200 "
    "whether or not a token came back: `success`, the token server's `status`, `error` in "
    "words, and `expiresIn`. The token itself is never shown. ApiKeyHeader and BasicAuth "
    "credentials have no token to fetch: 422 naming `authStrategy`.",
)
async def test_credential(
    credential_id: CredentialId, principal: CurrentPrincipal, request: Request
) -> Response:
    outcome = await service.check_token(
        runtime(request), principal=principal, credential_id=credential_id
    )
    return envelope(outcome)
