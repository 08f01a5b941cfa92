"""POST /v2/auth/token: Redox's JWT client-assertion exchange for a five-minute token."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from waypost.auth import service
from waypost.runtime import runtime

router = APIRouter(tags=["authentication"])
TOKEN_PATH = "/v2/auth/token"  # noqa: S105 - a URL path, not a secret


class TokenAnswer(BaseModel):
    access_token: str
    token_type: str
    expires_in: int


class TokenError(BaseModel):
    error: str
    error_description: str
    error_uri: str


_FORM = {
    "application/x-www-form-urlencoded": {
        "schema": {
            "type": "object",
            "required": ["grant_type", "client_assertion_type", "client_assertion"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "client_assertion_type": {
                    "type": "string",
                    "enum": [service.CLIENT_ASSERTION_TYPE],
                },
                "client_assertion": {
                    "type": "string",
                    "description": "A JWT signed with a registered key: header kid; iss and "
                    "sub the client id; aud this URL; iat within the past 5 minutes; a jti "
                    "used once. RS256, RS384, ES256 or ES384.",
                },
            },
        }
    }
}


def _answer(status: int, body: dict[str, object]) -> Response:
    # OAuth answers are never cached (RFC 6749 section 5.1).
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _token_url(request: Request) -> str:
    public = runtime(request).settings.public_url.rstrip("/")
    return f"{public or str(request.base_url).rstrip('/')}{TOKEN_PATH}"


@router.post(
    TOKEN_PATH,
    response_model=TokenAnswer,
    responses={
        400: {"model": TokenError, "description": "Malformed token request"},
        401: {"model": TokenError, "description": "The client assertion was refused"},
    },
    openapi_extra={"requestBody": {"required": True, "content": _FORM}},
    summary="Exchange a signed JWT for a five-minute bearer token",
)
async def token(request: Request) -> Response:
    try:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise service.TokenError(
                400, "invalid_request", "x-www-form-urlencoded content-type required"
            )
        body = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        assertion = service.check_token_request(form)
        access_token = await service.exchange_assertion(
            runtime(request).db,
            assertion,
            _token_url(request),
            request.client.host if request.client else None,
        )
    except service.TokenError as exc:
        return _answer(
            exc.status, {"error": exc.error, "error_description": exc.description, "error_uri": ""}
        )
    return _answer(
        200,
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": service.PLATFORM_TOKEN_SECONDS,
        },
    )
