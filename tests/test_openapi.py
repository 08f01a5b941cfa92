"""Property-based conformance of the running server to its own OpenAPI document.

Schemathesis loads `/openapi.json` from the test server (SQLite and PostgreSQL) and, for
every operation, sends its deterministic coverage cases plus Hypothesis-generated positive
and negative requests. Every response must be a non-5xx with a documented status code,
content type, headers and body schema, and authenticated routes must enforce their token.

Hooks steer path parameters to real environment, organization and destination ids part of
the time, and some create bodies to a valid shape, so creates, reads, updates and deletes
happen in real environments instead of ending in 404 or 422.

`schemathesis.pytest.from_fixture` cannot be used here: schemathesis 4.32.5 reads
`Function._nodeid`, which pytest 9.2 no longer has. The test drives the same machinery
itself: `iter_coverage_cases`, `APIOperation.as_strategy`, then `Case.call` and
`Case.validate_response` (split so the response can feed the id pool before validation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import strategies as st
from schemathesis import AuthContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.support import Org, Server
from waypost.app import create_app

MAX_EXAMPLES = 25  # per operation and generation mode, beside the deterministic coverage cases

# No 5xx; status code, content type, headers and body as documented; negative input is
# rejected with a 4xx; a missing or wrong token is refused; unknown methods answer 405 with
# an honest Allow header. Not `positive_data_acceptance`: rules that need the database
# (authCredential must exist, https outside Development) reject schema-valid input with a
# documented 422 by design.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    ignored_auth,
    unsupported_method,
    allow_header_conformance,
]

CREATE = "POST /platform/v1/environments/{environmentId}/destinations"

# Routes that must reach a real resource at least once, and the status that proves it.
MUST_SUCCEED = {
    CREATE: 201,
    "GET /platform/v1/environments/{environmentId}/destinations": 200,
    "GET /platform/v1/destinations/{destinationId}": 200,
    "PATCH /platform/v1/destinations/{destinationId}": 200,
    "DELETE /platform/v1/destinations/{destinationId}": 200,
    "GET /platform/v1/organizations/{organizationId}/environments": 200,
}

SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # Requests to a real server are slow next to in-memory generation.
    suppress_health_check=[
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.filter_too_much,
        hypothesis.HealthCheck.data_too_large,
    ],
    phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink],
    verbosity=hypothesis.Verbosity.quiet,
)

ENDPOINTS = ["http://receiver.test/redox", "https://receiver.test/redox"]


@dataclass
class Live:
    """Real ids on the server. Destinations created during the run join the pool; deleted ones
    stay in it (reading them afterwards must give a documented 404). Strategies sample from
    a snapshot taken per operation, since Hypothesis needs the same choices on every replay."""

    org: Org
    destinations: list[str] = field(default_factory=list)
    snapshot: tuple[str, ...] = ()
    statuses: dict[str, set[int]] = field(default_factory=dict)

    @property
    def environments(self) -> list[str]:
        return [self.org.dev, self.org.staging, self.org.prod]

    def real_path_parameters(self, generated: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        """The generated values, or real ids in their place (about half of the time)."""
        choices: dict[str, st.SearchStrategy[Any]] = {}
        if "environmentId" in generated:
            choices["environmentId"] = st.sampled_from(self.environments)
        if "organizationId" in generated:
            choices["organizationId"] = st.just(str(self.org.id))
        if "destinationId" in generated and self.snapshot:
            choices["destinationId"] = st.sampled_from(self.snapshot)
        if not choices:
            return st.just(generated)
        real = st.fixed_dictionaries(choices).map(lambda ids: {**generated, **ids})
        return st.one_of(st.just(generated), real)

    def record(self, case: Any, response: Any) -> None:
        self.statuses.setdefault(case.operation.label, set()).add(response.status_code)
        if case.operation.label == CREATE and response.status_code == 201:
            self.destinations.append(response.json()["payload"]["destination"]["id"])


def _valid_create_body(body: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A positive create body reduced to what the environment rules accept."""
    name = body.get("name")
    # Only the generated name's letters and digits: a generated name often breaks the
    # name rules (control characters, surrounding space), which is not what this body is for.
    name = (
        f"fuzz {''.join(c for c in name if c.isalnum())}"[:255] if isinstance(name, str) else "fuzz"
    )
    kept = {k: v for k, v in body.items() if k in ("setupState", "verificationToken")}
    return st.sampled_from(ENDPOINTS).map(lambda url: {**kept, "name": name, "endpoint": url})


def _load_schema(server: Server, live: Live) -> Any:
    config = schemathesis.Config.from_dict(
        {"generation": {"max-examples": MAX_EXAMPLES, "deterministic": True}}
    )
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json", config=config)
    default_security = schema.raw_schema.get("security")

    # Whatever the security scheme is called: the owner's token wherever one is required,
    # unless the case is about leaving it out or sending a broken one. No refetch on 401.
    @schema.auth(refresh_interval=None, retry_on=[])
    class OwnerToken:
        def get(self, case: Any, _context: Any) -> str | None:
            secured = case.operation.definition.raw.get("security", default_security)
            return live.org.owner_token if secured else None

        def set(self, case: Any, token: str, _context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}

    @schema.hook("flatmap_case")
    def steer(_context: Any, case: Any) -> st.SearchStrategy[Any]:
        def with_path(params: dict[str, Any]) -> Any:
            case.path_parameters = params
            return case

        strategy = live.real_path_parameters(dict(case.path_parameters or {})).map(with_path)
        creating = case.operation.label == CREATE
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if creating and positive and isinstance(case.body, dict):

            def with_body(pair: tuple[Any, dict[str, Any] | None]) -> Any:
                steered, body = pair
                if body is not None:
                    steered.body = body
                return steered

            body = st.one_of(st.none(), _valid_create_body(case.body))
            return st.tuples(strategy, body).map(with_body)
        return strategy

    return schema


def _call(schema: Any, live: Live, case: Any) -> None:
    __tracebackhide__ = True
    response = case.call(timeout=30)
    live.record(case, response)
    case.validate_response(response, checks=CHECKS)


def _coverage(schema: Any, live: Live, operation: Any) -> None:
    """Schemathesis's deterministic boundary and negative cases, authenticated like the engine."""
    __tracebackhide__ = True
    generation = schema.config.generation_for(operation=operation)
    modes = list(GenerationMode)
    failures: dict[str, str] = {}
    for case in schema.iter_coverage_cases(
        operation, generation_modes=modes, generation_config=generation
    ):
        if not schema.is_security_param_negated(case):
            schema.auth.set(case, AuthContext(operation=operation, app=None))
        if case.meta is not None and case.meta.generation.mode.is_positive:
            params = dict(case.path_parameters or {})
            if "environmentId" in params:
                params["environmentId"] = live.org.dev
            if "organizationId" in params:
                params["organizationId"] = str(live.org.id)
            if "destinationId" in params and live.snapshot:
                params["destinationId"] = live.snapshot[-1]
            case.path_parameters = params
        try:
            _call(schema, live, case)
        except FailureGroup as group:  # keep going: report each distinct failure once
            key = " | ".join(sorted(f"{type(f).__name__}: {f.title}" for f in group.exceptions))
            failures.setdefault(key, str(group))
    if failures:
        pytest.fail("\n\n".join(failures.values()), pytrace=False)


def _fuzz(schema: Any, live: Live, operation: Any, mode: GenerationMode) -> None:
    __tracebackhide__ = True

    @SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _call(schema, live, case)

    run()


def _has_inputs(operation: Any) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


# One backend per file: pytest-xdist spreads files over its workers, and these two runs
# are the suite's longest (tests/test_openapi_postgres.py holds the PostgreSQL one).
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_every_operation_conforms_to_the_openapi_document(
    server: Server, org: Org, subtests: pytest.Subtests
) -> None:
    check_conformance(server, org, subtests)


def check_conformance(server: Server, org: Org, subtests: pytest.Subtests) -> None:
    live = Live(org)
    with org.client() as api:
        for n in range(3):
            made = api.post(
                f"/platform/v1/environments/{org.dev}/destinations",
                json={"name": f"seed {n}", "endpoint": ENDPOINTS[0]},
            )
            assert made.status_code == 201, made.text
            live.destinations.append(made.json()["payload"]["destination"]["id"])

    schema = _load_schema(server, live)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every route the app serves is documented, so every one of them is exercised below.
    routed = {
        f"{method} {route.path_format}"
        for route in iter_route_contexts(create_app(server.settings).routes)
        if isinstance(route.original_route, APIRoute) and route.original_route.include_in_schema
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert {op.label for op in operations} == routed

    # Deletes last, so the other operations find live destinations to work on.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        live.snapshot = tuple(live.destinations)
        with subtests.test(operation.label, phase="coverage"):
            _coverage(schema, live, operation)
        with subtests.test(operation.label, phase="positive"):
            _fuzz(schema, live, operation, GenerationMode.POSITIVE)
        if _has_inputs(operation):
            with subtests.test(operation.label, phase="negative"):
                _fuzz(schema, live, operation, GenerationMode.NEGATIVE)

    assert set(live.statuses) == routed, "some operations were never called"
    # The steering worked: real resources were created, listed, read, changed and deleted.
    for label, status in MUST_SUCCEED.items():
        seen = live.statuses.get(label, set())
        assert status in seen, f"{label} never answered {status}; saw {sorted(seen)}"
