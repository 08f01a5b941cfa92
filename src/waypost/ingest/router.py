"""POST /endpoint: Redox's send API (the Data Model API), HTTP only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from waypost.http import Unauthorized, error_responses
from waypost.ingest import service
from waypost.runtime import runtime
from waypost.sources import service as sources

router = APIRouter(tags=["send"])

_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["Meta"],
            "properties": {
                "Meta": {
                    "type": "object",
                    "required": ["DataModel", "EventType"],
                    "properties": {
                        "DataModel": {"type": "string", "examples": ["PatientAdmin"]},
                        "EventType": {"type": "string", "examples": ["Arrival"]},
                        "Test": {"type": "boolean"},
                        "Destinations": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["ID"],
                                "properties": {"ID": {"type": "string", "format": "uuid"}},
                            },
                        },
                    },
                }
            },
            "additionalProperties": True,
        },
        "example": {
            "Meta": {
                "DataModel": "PatientAdmin",
                "EventType": "Arrival",
                "Test": True,
                "Destinations": [{"ID": "af394f14-b34a-464f-8d24-895f370af4c9"}],
            },
            "Patient": {"Identifiers": [{"ID": "0000000001", "IDType": "MR"}]},
        },
    }
}


@router.post(
    "/endpoint",
    responses={
        200: {
            "description": "Accepted and committed: the request's Meta with Source, "
            "Destinations and one Logs entry per destination. For a synchronous query, "
            "the destination's answer.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **error_responses(400, 401, 403, 404, 409, 413, 422, 502),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": _BODY},
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "The same key from the same source within 24 hours answers "
                "the first answer again and queues nothing; with a different body, 409.",
            }
        ],
    },
    summary="Send a message (Redox's Data Model API)",
    description="Authenticate with a source's token (`/auth/authenticate`, `/v2/auth/token` "
    "or `/oauth/token`). The answer is 200 only after the message, its logs and its queue "
    "entries are committed. Without `Meta.Destinations` the message goes to every "
    "destination subscribed from this source for `Meta.DataModel`.",
)
async def send(request: Request) -> Response:
    # Headers are read here rather than declared as parameters: FastAPI's per-parameter
    # resolution costs on the busiest route (the OpenAPI entry above documents them).
    rt = runtime(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    source = (
        await sources.source_for_token(rt.db, token.strip()) if scheme.lower() == "bearer" else None
    )
    if source is None:
        raise Unauthorized("A valid source access token is required (Authorization: Bearer ...).")
    answer = await service.accept(
        rt,
        source=source,
        raw=await request.body(),
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return Response(answer.body, media_type="application/json")
