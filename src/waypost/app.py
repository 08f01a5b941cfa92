"""create_app(): routers, error handlers and the database's lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from waypost import __version__
from waypost.access import unknown_caller
from waypost.audit.router import router as audit_router
from waypost.auth.router import router as auth_router
from waypost.auth.service import authenticate
from waypost.credentials import service as credentials
from waypost.credentials.router import router as credentials_router
from waypost.delivery.senders import blob as blob_sender
from waypost.delivery.worker import Worker
from waypost.destinations import collaborators as destinations
from waypost.destinations.router import router as destinations_router
from waypost.http import (
    BodySizeLimit,
    install_error_handlers,
    problem_response,
    strict_request,
)
from waypost.ingest.router import router as ingest_router
from waypost.logs.router import router as logs_router
from waypost.openapi import TITLE, install_docs, openapi_document
from waypost.organizations.router import router as organizations_router
from waypost.ratelimit import RateLimit
from waypost.runtime import open_runtime, runtime, secret_box
from waypost.settings import Settings
from waypost.sources.router import exchange_on_platform_route as sources_platform_exchange
from waypost.sources.router import legacy_auth_router as sources_legacy_auth_router
from waypost.sources.router import router as sources_router
from waypost.sources.router import token_router as sources_token_router
from waypost.subscriptions.router import router as subscriptions_router

log = logging.getLogger("waypost")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Checked now, so that a missing key fails here rather than at start-up.
    box = secret_box(settings)
    destinations.connect(
        cloud_probe=blob_sender.probe_destination, credential_fit=credentials.fit_for_destination
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, box=box) as rt:
            app.state.runtime = rt
            # Everything built so far (routes, schemas, validators) lives as long as the
            # process: keep it out of the collector's way, so collections stay short.
            gc.collect()
            gc.freeze()
            if not settings.delivery_worker:
                yield
                return
            worker = Worker(rt, concurrency=settings.worker_concurrency)
            running = asyncio.create_task(worker.run(), name="delivery-worker")
            try:
                yield
            finally:
                await worker.stop()
                await running

    app = FastAPI(
        title=TITLE,
        version=__version__,
        lifespan=lifespan,
        # Served by install_docs from the package's own assets, never a CDN.
        docs_url=None,
        redoc_url=None,
        # Every route: no unknown query parameters, JSON bodies labelled as JSON.
        dependencies=[Depends(strict_request)],
        # FastAPI's native OpenTelemetry asks the global providers on every request
        # whether anyone listens (several percent of the send API's CPU); Waypost
        # configures no OpenTelemetry, so nobody does.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.authenticate = authenticate
    app.state.exchange_other_clients = sources_platform_exchange
    install_error_handlers(app, caller_check=unknown_caller)
    # The send API takes messages up to Redox's quota; the Platform API, small bodies.
    app.add_middleware(BodySizeLimit, larger={"/endpoint": settings.max_message_bytes})
    if settings.rate_limit_requests:
        app.add_middleware(
            RateLimit,
            limit=settings.rate_limit_requests,
            window_seconds=settings.rate_limit_window_seconds,
        )
    # First: routes are matched in order, and the send API is the busiest route.
    app.include_router(ingest_router)
    app.include_router(destinations_router)
    app.include_router(credentials_router)
    app.include_router(organizations_router)
    app.include_router(audit_router)
    app.include_router(auth_router)
    app.include_router(sources_router)
    app.include_router(sources_legacy_auth_router)
    app.include_router(sources_token_router)
    app.include_router(subscriptions_router)
    app.include_router(logs_router)

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

    install_docs(app)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app
