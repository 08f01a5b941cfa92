"""The OpenAPI document is the contract: every operation is described and has an example
(request and answer) that its own models accept; every status a route shares with all
routes is documented (400 for an unknown query parameter, 413/415/422 for a JSON body, 401
for a token, 429 with its headers under the rate limit, 500); every property has a
description; schema names are stable; /docs and /redoc work without a CDN."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter

from tests.support import Server
from waypost.app import create_app
from waypost.crypto import new_secret_key
from waypost.openapi_examples import EXAMPLES
from waypost.ratelimit import LIMITED_PREFIXES
from waypost.settings import Settings

METHODS = {"get", "post", "put", "patch", "delete"}
# Routes that read their body themselves, so no 415: the send API, and the legacy sign-in,
# which takes JSON labelled as a form because Redox's own curl example sends it so.
OWN_BODY = {"/endpoint", "/auth/authenticate", "/auth/refreshToken"}
RATE_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


@pytest.fixture(scope="module")
def app_and_document(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    settings = Settings(secret_key=new_secret_key(), data_dir=tmp_path_factory.mktemp("doc"))
    app = create_app(settings)
    return app, app.openapi()


@pytest.fixture(scope="module")
def document(app_and_document: tuple[Any, dict[str, Any]]) -> dict[str, Any]:
    return app_and_document[1]


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _missing(document: dict[str, Any], check: Any) -> list[str]:
    return [label for label, path, operation in operations(document) if not check(path, operation)]


def test_every_operation_has_a_summary_and_a_description(document: dict[str, Any]) -> None:
    assert _missing(document, lambda _p, op: op.get("summary") and op.get("description")) == []


def _success(operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    status = min(s for s in operation["responses"] if s.isdigit() and s.startswith("2"))
    return status, operation["responses"][status]


def test_every_operation_has_a_request_and_a_response_example(document: dict[str, Any]) -> None:
    def has_examples(_path: str, operation: dict[str, Any]) -> bool:
        body = operation.get("requestBody", {}).get("content", {})
        _status, success = _success(operation)
        answers = success.get("content", {})
        return (
            all("example" in media for media in body.values())
            and bool(answers)
            and all("example" in media for media in answers.values())
        )

    assert _missing(document, has_examples) == []


def test_every_shared_status_is_documented(document: dict[str, Any]) -> None:
    def documented(path: str, operation: dict[str, Any]) -> bool:
        responses = operation["responses"]
        wanted = {"400", "500"}
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content and path not in OWN_BODY:
            wanted |= {"413", "415", "422"}
        if operation.get("security"):
            wanted.add("401")
        if "{" in path and path.startswith("/platform/"):
            wanted.add("404")
        if not wanted <= set(responses):
            return False
        if path.startswith(LIMITED_PREFIXES):
            refused = responses.get("429", {})
            if set(refused.get("headers", {})) != {"Retry-After", *RATE_HEADERS}:
                return False
            return all(
                RATE_HEADERS <= set(r.get("headers", {}))
                for s, r in responses.items()
                if s != "429"
            )
        return True

    assert _missing(document, documented) == []


def test_errors_are_problem_json(document: dict[str, Any]) -> None:
    for label, _path, operation in operations(document):
        if "authentication" in operation.get("tags", []):
            continue  # OAuth's own error shape
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert set(response["content"]) == {"application/problem+json"}, (label, status)


def test_every_property_has_a_description(document: dict[str, Any]) -> None:
    missing = [
        f"{name}.{prop}"
        for name, schema in document["components"]["schemas"].items()
        for prop, prop_schema in schema.get("properties", {}).items()
        if not prop_schema.get("description")
    ]
    assert missing == []


def test_schema_names_are_stable_public_names(document: dict[str, Any]) -> None:
    names = list(document["components"]["schemas"])
    assert [n for n in names if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", n)] == []
    assert "DestinationEnvelope" in names


def test_field_rules_appear_in_the_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    storage = schemas["StorageSettings"]["properties"]
    assert storage["storageAccountName"]["pattern"] == "^[a-z0-9]{3,24}$"
    assert storage["containerName"]["pattern"] == "^[a-z0-9]+(-[a-z0-9]+)*$"
    assert (storage["containerName"]["minLength"], storage["containerName"]["maxLength"]) == (
        3,
        63,
    )
    audit = document["paths"]["/platform/v1/organizations/{organizationId}/audit-events"]["get"]
    params = {p["name"]: p["schema"] for p in audit["parameters"]}
    action = params["actionType"]["anyOf"][0]["items"]
    assert "destination-created" in action["enum"]
    assert params["status"]["anyOf"][0]["enum"] == ["successful", "failed"]


def _routes(app: Any) -> dict[str, APIRoute]:
    return {
        f"{method} {context.path_format}": context.original_route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in (context.methods or set()) - {"HEAD"}
    }


def test_every_example_is_accepted_by_its_own_models(
    app_and_document: tuple[Any, dict[str, Any]],
) -> None:
    """An example that drifts from the models fails here, not in a reader's client."""
    app, document = app_and_document
    routes = _routes(app)
    assert set(EXAMPLES) == {label for label, _p, _o in operations(document)}
    for label, example in EXAMPLES.items():
        route = routes[label]
        body = route.body_field
        if body is not None and example["request"] is not None:
            assert body.field_info.annotation is not None
            TypeAdapter(body.field_info.annotation).validate_python(example["request"])
        if route.response_model is not None:
            TypeAdapter(route.response_model).validate_python(example["response"])


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_docs_and_redoc_load_their_assets_from_this_server(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200, html.text
            sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
            assert sources, html.text
            for source in sources:
                assert source.startswith("/"), f"{page} loads {source} from elsewhere"
                asset = client.get(source)
                assert asset.status_code == 200, source
                assert len(asset.content) > 1000, source
