"""The wire: Redox's envelope, RFC 9457 problem details, the body-size limit and the
request rules every route shares (no unknown query parameters, JSON bodies labelled so)."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("waypost.http")

API_VERSION = "1.0.0"
MAX_BODY_BYTES = 1024 * 1024
PROBLEM_JSON = "application/problem+json"
JSON = "application/json"


class WireModel(BaseModel):
    """A request body with Redox's camelCase names (snake_case inside). A typo in a field
    name must fail loudly rather than be dropped."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True
    )


class ResponseModel(BaseModel):
    """A response body: snake_case inside, Redox's camelCase names on the wire (and in the
    OpenAPI document, which FastAPI writes by alias)."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, frozen=True
    )


class Page(ResponseModel):
    """Offset paging, as Redox's audit events answer it."""

    current_page: int
    page_type: str
    page_size: int
    links: dict[str, str]


MAX_CURSOR = 2**63 - 1  # a BIGINT seq; an INTEGER one is narrower, see decode_cursor


def encode_cursor(position: int) -> str:
    """An opaque `_cursor` for keyset paging: the row position (its seq) a page ended at."""
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, highest: int = MAX_CURSOR) -> int:
    """The position an `encode_cursor` value holds; 422 naming `_cursor` for anything else
    (`highest`: the largest value the seq column can hold, so no query ever overflows)."""
    try:
        position = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        position = -1
    if not 0 <= position <= highest:
        raise Invalid("_cursor", "is not a cursor this API handed out")
    return position


class Meta(BaseModel):
    version: str
    links: dict[str, str] | None = None
    page: Page | None = None


PayloadT = TypeVar("PayloadT", bound=BaseModel)


class Envelope(BaseModel, Generic[PayloadT]):
    """Redox's success shape. A route names `Envelope[ItsPayload]` as its response model and
    answers with `envelope(ItsPayload(...))`, so the body is serialized by the very model
    the OpenAPI document shows."""

    meta: Meta
    payload: PayloadT


class MessagePayload(ResponseModel):
    message: str


class SuccessPayload(ResponseModel):
    success: bool


def envelope(
    payload: BaseModel,
    *,
    status: int = 200,
    links: dict[str, str] | None = None,
    page: Page | None = None,
) -> Response:
    """The envelope around a payload model, serialized by its aliases."""
    meta: dict[str, Any] = {"version": API_VERSION}
    if links:
        meta["links"] = links
    if page is not None:
        meta["page"] = page.model_dump(mode="json", by_alias=True)
    body = payload.model_dump(mode="json", by_alias=True)
    return Response(
        orjson.dumps({"meta": meta, "payload": body}),
        status_code=status,
        media_type="application/json",
    )


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error answers."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised anywhere below a router; becomes a problem+json response."""

    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


class BadRequest(ProblemError):
    status, title, slug = 400, "Bad Request", "bad-request"

    @classmethod
    def field(cls, field: str, message: str) -> BadRequest:
        return cls(f"{field}: {message}", errors=[(field, message)])


class BadGateway(ProblemError):
    """Something Waypost relayed failed on the far side (a synchronous query's receiver)."""

    status, title, slug = 502, "Bad Gateway", "bad-gateway"


class Unauthorized(ProblemError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ProblemError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ProblemError):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(ProblemError):
    status, title, slug = 409, "Conflict", "conflict"


class UnsupportedMediaType(ProblemError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class Invalid(ProblemError):
    """A rule was broken; `errors` names each field."""

    status, title, slug = 422, "Unprocessable Content", "validation"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[(field, message)])

    @classmethod
    def many(cls, errors: list[tuple[str, str]]) -> Invalid:
        first = cls(*errors[0])
        first.errors = errors
        first.detail = "; ".join(f"{f}: {m}" for f, m in errors)
        return first


def problem_response(
    status: int,
    title: str,
    slug: str,
    detail: str,
    errors: list[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:waypost:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [{"field": f, "message": m} for f, m in errors]
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "is required"
    return str(error["msg"]).removeprefix("Value error, ")


def _allowed_values(error: dict[str, Any]) -> str | None:
    """For a query parameter whose value is not one of a fixed set: the set, in words."""
    if error["type"] not in ("enum", "literal_error") or error["loc"][:1] != ("query",):
        return None
    expected = str(error.get("ctx", {}).get("expected", ""))
    return f"must be one of {expected}" if expected else "is not an allowed value"


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(
            400, "Bad Request", "malformed-json", "The request body is not valid JSON."
        )
    # A filter value that names nothing there is (`status=ok`) is a bad request, as an
    # unknown parameter is: 400, naming the parameter and the values it takes.
    unknown = [
        (_field_name(tuple(e["loc"])), allowed)
        for e in errors
        if (allowed := _allowed_values(e)) is not None
    ]
    if unknown:
        detail = "; ".join(f"{f}: {m}" for f, m in unknown)
        return problem_response(400, "Bad Request", "bad-request", detail, unknown)
    if any(tuple(e["loc"]) == ("body",) for e in errors):
        detail_errors = [("body", "must be a JSON object")]
        return problem_response(
            422, "Unprocessable Content", "validation", "body: must be a JSON object", detail_errors
        )
    fields = [(_field_name(tuple(e["loc"])), _validation_message(e)) for e in errors]
    detail = "; ".join(f"{f}: {m}" for f, m in fields)
    return problem_response(422, "Unprocessable Content", "validation", detail, fields)


async def _on_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.title, exc.slug, exc.detail, exc.errors, exc.headers)


def _allowed_methods(request: Request) -> str:
    """Every method the path supports: Starlette keeps one route per method, so its own
    405 names only the first route's."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        return problem_response(
            405,
            "Method Not Allowed",
            "http",
            f"{request.method} is not supported here.",
            headers={"Allow": _allowed_methods(request)},
        )
    titles = {404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}
    title = titles.get(exc.status_code, "Error")
    detail = "No such route." if exc.status_code == 404 else str(exc.detail)
    return problem_response(exc.status_code, title, "http", detail, headers=exc.headers)


async def _on_unexpected(_request: Request, exc: Exception) -> Response:
    # The trace goes to the log, never to the client.
    log.error("unhandled error", exc_info=exc)
    return problem_response(
        500,
        "Internal Server Error",
        "internal",
        "An unexpected error occurred; it has been logged.",
    )


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for inner in dependant.dependencies:
        yield from _dependants(inner)


class _RouteRules:
    """What a route takes, read once from its declaration."""

    __slots__ = ("json_body", "query")

    def __init__(self, route: APIRoute) -> None:
        self.query = sorted(
            {f.alias for d in _dependants(route.dependant) for f in d.query_params}
            | {
                p["name"]
                for p in (route.openapi_extra or {}).get("parameters", [])
                if p.get("in") == "query"
            }
        )
        # A body FastAPI parses into a model; routes that read their own body (the send
        # API, the token routes) name their media types themselves.
        self.json_body = route.body_field is not None


def route_rules(route: APIRoute) -> _RouteRules:
    """Read once per route and kept on it (routes compare by value, so no mapping can key
    them)."""
    rules = getattr(route, "_waypost_rules", None)
    if not isinstance(rules, _RouteRules):
        rules = _RouteRules(route)
        setattr(route, "_waypost_rules", rules)  # noqa: B010 - not an attribute APIRoute declares
    return rules


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


async def strict_request(request: Request) -> None:
    """Every route's dependency: a query parameter the route does not take is a 400 that
    names it and the ones it takes (as a body's unknown field is a 422), and a body sent to
    a route that takes JSON must say it is JSON (415 otherwise)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    rules = route_rules(route)
    if request.scope.get("query_string"):
        unknown = [name for name in dict.fromkeys(request.query_params) if name not in rules.query]
        if unknown:
            takes = (
                f"this route takes {', '.join(rules.query)}"
                if rules.query
                else "this route takes no query parameters"
            )
            errors = [(name, f"unknown query parameter; {takes}") for name in unknown]
            problem = BadRequest("; ".join(f"{f}: {m}" for f, m in errors), errors=errors)
            raise problem
    if rules.json_body and _has_body(request):
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            got = content_type.split(";", 1)[0].strip() or "none"
            raise UnsupportedMediaType(
                f"Content-Type: must be {JSON} (got {got}).",
                errors=[("Content-Type", f"must be {JSON}")],
            )


# Who is calling, checked before a body's problems are told: a route that looks its
# caller up in its own statement reads the body first, and an unknown caller must get the
# 401 it would get without a body, not a 422 about the body. None: no objection.
CallerCheck = Callable[[Request], Awaitable[ProblemError | None]]


def install_error_handlers(app: FastAPI, *, caller_check: CallerCheck | None = None) -> None:
    async def on_validation_error(request: Request, exc: Exception) -> Response:
        if caller_check is not None:
            refusal = await caller_check(request)
            if refusal is not None:
                return await _on_problem(request, refusal)
        return await _on_validation_error(request, exc)

    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


def _too_large(limit: int) -> str:
    return f"The request body is larger than the {limit // 1024} KiB limit."


class BodySizeLimit:
    """Refuses bodies over MAX_BODY_BYTES with 413: by Content-Length before reading,
    or by counting a streamed body as it arrives."""

    def __init__(self, app: ASGIApp, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.larger = dict(larger or {})  # path -> its own limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], MAX_BODY_BYTES)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                response = problem_response(
                    413, "Content Too Large", "too-large", _too_large(limit)
                )
                await response(scope, receive, send)
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI passes HTTPException through body parsing; the handler
                    # below renders it as problem+json.
                    raise StarletteHTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counting_receive, send)


ERROR_DESCRIPTIONS = {
    400: "Malformed request (for example, a body that is not JSON).",
    401: "Missing or invalid bearer token.",
    403: "Your role may read but not change this resource.",
    404: "Not found, or not visible to you.",
    409: "Conflicts with the current state.",
    413: "Request body too large.",
    415: "The body is not labelled `Content-Type: application/json`.",
    422: "A field breaks a rule; `errors` names each field.",
    502: "The receiver of a relayed request failed.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for a route's errors; create_app points them at the Problem schema."""
    return {s: {"description": ERROR_DESCRIPTIONS[s], "model": Problem} for s in statuses}
