"""POST /v2/auth/token: Redox's JWT client-assertion exchange for a five-minute token.

The form, its checks and the OAuth answers are shared with Source Auth v2's
/oauth/token (sources/router.py) through `answer_token_request`.

The arrow points one way, from sources to auth: sources uses auth's assertion checks and
this module's form handling. Yet a source's OAuth API key may also sign in here, as on
Redox, so this route must reach sources without importing it: create_app() plugs the
sources' exchange in as `app.state.exchange_other_clients`, as it plugs auth's token
lookup in as `app.state.authenticate` for access."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from waypost.auth import service
from waypost.auth.schemas import TokenAnswer, TokenError
from waypost.runtime import Runtime, runtime

router = APIRouter(tags=["authentication"])
TOKEN_PATH: Final = "/v2/auth/token"  # noqa: S105 - a URL path, not a secret


TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": TokenError, "description": "Malformed token request"},
    401: {"model": TokenError, "description": "The client assertion was refused"},
}


def token_form(assertion: str) -> dict[str, Any]:
    """The OpenAPI request body of a token route; `assertion` describes the JWT."""
    schema = {
        "type": "object",
        "required": ["grant_type", "client_assertion_type", "client_assertion"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]},
            "client_assertion_type": {"type": "string", "enum": [service.CLIENT_ASSERTION_TYPE]},
            "client_assertion": {"type": "string", "description": assertion},
        },
    }
    content = {"application/x-www-form-urlencoded": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


# A checked client assertion, its audience and the caller's address, to (token, lifetime).
Exchange = Callable[[Runtime, str, str, str | None], Awaitable[tuple[str, int]]]
# The same for clients other than users; None when the assertion is not from one of them.
ExchangeOtherClients = Callable[[Runtime, str, str, str | None], Awaitable[tuple[str, int] | None]]


def _answer(status: int, body: dict[str, object]) -> Response:
    # OAuth answers are never cached (RFC 6749 section 5.1).
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def token_url(request: Request, path: str) -> str:
    """The URL a client assertion's aud names: WAYPOST_PUBLIC_URL, else this request's."""
    public = runtime(request).settings.public_url.rstrip("/")
    return f"{public or str(request.base_url).rstrip('/')}{path}"


async def answer_token_request(request: Request, path: str, exchange: Exchange) -> Response:
    """Reads a client-credentials form, lets `exchange` verify the assertion and issue a
    token, and answers in OAuth's shapes (errors as Redox documents them)."""
    try:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise service.TokenError(
                400, "invalid_request", "x-www-form-urlencoded content-type required"
            )
        body = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        assertion = service.check_token_request(form)
        token, seconds = await exchange(
            runtime(request),
            assertion,
            token_url(request, path),
            request.client.host if request.client else None,
        )
    except service.TokenError as exc:
        return _answer(
            exc.status, {"error": exc.error, "error_description": exc.description, "error_uri": ""}
        )
    return _answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": seconds})


def _other_client_or_user(others: ExchangeOtherClients) -> Exchange:
    async def exchange(
        rt: Runtime, assertion: str, audience: str, request_ip: str | None
    ) -> tuple[str, int]:
        issued = await others(rt, assertion, audience, request_ip)
        if issued is not None:
            return issued
        token = await service.exchange_assertion(rt.db, assertion, audience, request_ip)
        return token, service.PLATFORM_TOKEN_SECONDS

    return exchange


@router.post(
    TOKEN_PATH,
    response_model=TokenAnswer,
    responses=TOKEN_ERRORS,
    openapi_extra=token_form(
        "A JWT signed with a registered key (a user's, or a source's OAuth API key): header "
        "kid; iss and sub the client id; aud this URL; iat within the past 5 minutes; a jti "
        "used once. RS256, RS384, ES256 or ES384."
    ),
    summary="Exchange a signed JWT for a five-minute bearer token",
)
async def token(request: Request) -> Response:
    others: ExchangeOtherClients = request.app.state.exchange_other_clients
    return await answer_token_request(request, TOKEN_PATH, _other_client_or_user(others))
