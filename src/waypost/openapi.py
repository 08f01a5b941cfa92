"""The OpenAPI document, the contract: every error as application/problem+json, the statuses
every route shares (400, 415, 429 with its headers, 500), an example for every operation
(`openapi_examples.py`), a description for every property, stable schema names; and the
interactive docs (Swagger UI at /docs, ReDoc at /redoc) served from the fastapi-offline
package's assets, so they work without reaching a CDN."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles

from waypost import __version__
from waypost.http import ERROR_DESCRIPTIONS, JSON, PROBLEM_JSON, route_rules
from waypost.openapi_descriptions import OPERATION_DESCRIPTIONS, PROPERTY_DESCRIPTIONS
from waypost.openapi_examples import EXAMPLES
from waypost.ratelimit import LIMITED_PREFIXES

TITLE = "Waypost Platform API"
DESCRIPTION = """A self-hosted, Redox-compatible Platform API for destinations, and Redox's \
send API.

A script written for Redox's Platform API (`https://api.redoxengine.com/platform`) works \
against Waypost (`http://HOST:PORT/platform`) by changing only the base URL. Every success is \
Redox's envelope, `{"meta": {"version": "1.0.0"}, "payload": {...}}`; every error is an RFC \
9457 problem (`application/problem+json`) whose `errors` name each field at fault.

Requests to `/platform/` and `/v2/` count against a limit per client address (Redox's: \
10,000 per five minutes); every answer there carries `X-RateLimit-Limit`, \
`X-RateLimit-Remaining` and `X-RateLimit-Reset`, and a refusal (429) `Retry-After` too."""

ASSETS = "/docs/assets"
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_SECONDS = {"type": "integer", "minimum": 0}
RATE_HEADERS: dict[str, dict[str, Any]] = {
    "X-RateLimit-Limit": {
        "description": "Requests allowed per window from this client address.",
        "schema": _SECONDS,
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in the current window.",
        "schema": _SECONDS,
    },
    "X-RateLimit-Reset": {
        "description": "Seconds until the window frees room for another request.",
        "schema": _SECONDS,
    },
}
RETRY_AFTER = {
    "description": "Seconds to wait before the next request is allowed.",
    "schema": {"type": "integer", "minimum": 1},
}
STATUS_429 = "Too many requests from this address; wait `Retry-After` seconds."


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM}}}


def _operation_routes(app: FastAPI) -> dict[str, APIRoute]:
    """Each documented operation's route, by "METHOD path"."""
    return {
        f"{method} {context.path_format}": context.original_route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in (context.methods or set()) - {"HEAD"}
    }


def _describe_properties(schemas: dict[str, Any]) -> None:
    """Fills a property's description from PROPERTY_DESCRIPTIONS ("Schema.property", then
    "property"): one meaning per wire name, written once for every schema that carries it.
    A description on the model itself wins."""
    for name, schema in schemas.items():
        for prop, prop_schema in schema.get("properties", {}).items():
            if prop_schema.get("description"):
                continue
            text = PROPERTY_DESCRIPTIONS.get(f"{name}.{prop}") or PROPERTY_DESCRIPTIONS.get(prop)
            if text:
                prop_schema["description"] = text


def _attach_examples(label: str, operation: dict[str, Any]) -> None:
    example = EXAMPLES.get(label)
    if example is None:
        return
    body = operation.get("requestBody", {}).get("content", {})
    if example["request"] is not None:
        for media in body.values():
            media["example"] = copy.deepcopy(example["request"])
    success = operation["responses"].get(str(example["status"]), {})
    for media in success.setdefault("content", {JSON: {"schema": {}}}).values():
        media["example"] = copy.deepcopy(example["response"])


_GENERIC = re.compile(r"Envelope_(\w+?)_")


def _stable_names(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic names a generic model's schema after its parameters (`Envelope_X_`): the
    envelope around DestinationPayload is published as DestinationEnvelope instead."""
    schemas = schema["components"]["schemas"]
    renamed = {}
    for name in list(schemas):
        if (match := _GENERIC.fullmatch(name)) is not None:
            stem = match.group(1).removesuffix("Payload").removesuffix("Out")
            renamed[name] = f"{stem}Envelope"
    text = json.dumps(schema)
    for old, new in renamed.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    result: dict[str, Any] = json.loads(text)
    result["components"]["schemas"] = {
        renamed.get(name, name): value for name, value in result["components"]["schemas"].items()
    }
    for new in renamed.values():
        result["components"]["schemas"][new]["title"] = new
    return result


def openapi_document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=TITLE, version=__version__, routes=app.routes, description=DESCRIPTION
    )
    routes = _operation_routes(app)
    for path, path_item in schema["paths"].items():
        limited = path.startswith(LIMITED_PREFIXES)
        for method, operation in path_item.items():
            label = f"{method.upper()} {path}"
            route = routes[label]
            if not operation.get("description") and label in OPERATION_DESCRIPTIONS:
                operation["description"] = OPERATION_DESCRIPTIONS[label]
            responses = operation.setdefault("responses", {})
            # The OAuth token routes answer OAuth's own error shape.
            oauth = "authentication" in operation.get("tags", [])
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and not oauth:
                    response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM}}
            # What every route may answer (http.strict_request, the body parser, the rate
            # limit, an unexpected failure).
            shared = [400] + ([413, 415, 422] if route_rules(route).json_body else [])
            for status in shared:
                responses.setdefault(str(status), _problem(ERROR_DESCRIPTIONS[status]))
            responses.setdefault("500", _problem("Unexpected error; it has been logged."))
            if limited:
                responses["429"] = _problem(STATUS_429)
                responses["429"]["headers"] = {"Retry-After": RETRY_AFTER, **RATE_HEADERS}
                for status, response in responses.items():
                    if status != "429":
                        response.setdefault("headers", {}).update(RATE_HEADERS)
            _attach_examples(label, operation)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    _describe_properties(components)
    app.openapi_schema = _stable_names(schema)
    return app.openapi_schema


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, with their scripts and styles served from
    the installed fastapi-offline package: no CDN, so they work on offline networks."""
    app.mount(ASSETS, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{TITLE} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{TITLE} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
