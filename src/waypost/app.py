"""create_app(): routers, error handlers and the database's lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from waypost import __version__
from waypost.audit.router import router as audit_router
from waypost.auth.router import router as auth_router
from waypost.credentials.router import router as credentials_router
from waypost.crypto import SecretBox, load_or_create_key_file
from waypost.db import Database
from waypost.destinations.router import router as destinations_router
from waypost.http import (
    PROBLEM_JSON,
    BodySizeLimit,
    install_error_handlers,
    problem_response,
)
from waypost.organizations.router import router as organizations_router
from waypost.outbound import OutboundClient, parse_allow_list
from waypost.ratelimit import RateLimit
from waypost.runtime import Runtime, runtime
from waypost.settings import Settings

log = logging.getLogger("waypost")


def secret_box(settings: Settings) -> SecretBox:
    """The key from the setting; the embedded SQLite set-up generates one on first run."""
    if settings.secret_key:
        return SecretBox.from_setting(settings.secret_key)
    if settings.database_url and not settings.database_url.startswith("sqlite"):
        raise ValueError("WAYPOST_SECRET_KEY is required when WAYPOST_DATABASE_URL is not SQLite")
    return SecretBox.from_setting(load_or_create_key_file(settings.data_dir / "secret.key"))


def _problem_openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI 3.1 in which every error response is application/problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title="Waypost Platform API",
        version=__version__,
        routes=app.routes,
        description="A self-hosted, Redox-compatible Platform API for destinations.",
    )
    problem = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            for status, response in responses.items():
                # The OAuth token route answers OAuth's own error shape.
                oauth = "authentication" in operation.get("tags", [])
                if status.isdigit() and int(status) >= 400 and not oauth:
                    response["content"] = {PROBLEM_JSON: {"schema": problem}}
            # Any route can fail unexpectedly; clients should know the shape.
            responses.setdefault(
                "500",
                {"description": "Unexpected error", "content": {PROBLEM_JSON: {"schema": problem}}},
            )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    box = secret_box(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url(), pool_size=settings.db_pool_size)
        allow = parse_allow_list(settings.outbound_allow)
        if allow:
            log.warning(
                "outbound guard: WAYPOST_OUTBOUND_ALLOW lets requests reach %s; "
                "unset it in production",
                ", ".join(str(n) for n in allow),
            )
        outbound = OutboundClient(allow, settings.ca_bundle)
        # Everything built so far (routes, schemas, validators) lives as long as the
        # process: keep it out of the collector's way, so collections stay short.
        gc.collect()
        gc.freeze()
        app.state.runtime = Runtime(settings=settings, db=db, secret_box=box, outbound=outbound)
        try:
            yield
        finally:
            await outbound.close()
            await db.close()

    app = FastAPI(
        title="Waypost Platform API",
        version=__version__,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    if settings.rate_limit_requests:
        app.add_middleware(
            RateLimit,
            limit=settings.rate_limit_requests,
            window_seconds=settings.rate_limit_window_seconds,
        )
    app.include_router(destinations_router)
    app.include_router(credentials_router)
    app.include_router(organizations_router)
    app.include_router(audit_router)
    app.include_router(auth_router)

    @app.get("/health", tags=["operations"], summary="Liveness; does not touch the database")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Readiness; checks the database",
        responses={503: {"description": "Database unreachable"}},
    )
    async def ready(request: Request) -> Response:
        try:
            await runtime(request).db.ping()
        except Exception as exc:  # any failure to reach the database means "not ready"
            log.warning("readiness check failed: %s", type(exc).__name__)
            return problem_response(
                503, "Service Unavailable", "not-ready", "The database is not reachable."
            )
        return Response(b'{"status":"ready"}', media_type="application/json")

    app.openapi = lambda: _problem_openapi(app)  # type: ignore[method-assign]
    return app
