"""examples/token_server.py, run as the README runs it, answers Waypost's credential test
(`POST /authcredentials/{id}/test`): success with the right secret, however Waypost is
told to send it, and a refusal with the wrong one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Org, free_port, listening_process

API = "/platform/v1"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "token_server.py"
CLIENT_ID, SECRET = "waypost", "the-client-secret"


@dataclass
class RunningTokenServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/token"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTokenServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("token-server") / "token_server.log"
    with listening_process(
        [
            *[sys.executable, str(EXAMPLE), "--port", str(port)],
            *["--client-id", CLIENT_ID, "--client-secret", SECRET],
        ],
        port,
        log,
    ) as process:
        yield RunningTokenServer(process, port, log)


def _test_credential(api: httpx.Client, org: Org, **fields: Any) -> dict[str, Any]:
    """Creates an OAuth credential with these fields and answers its test's payload."""
    created = api.post(
        f"{API}/authcredentials",
        json={
            "environmentId": org.dev,
            "name": "Example token server",
            "authStrategy": "OAuth_2.0_2-legged",
            "grantType": "client_credentials",
            "clientId": CLIENT_ID,
            "clientSecret": SECRET,
            "scopes": "system/*.write",
            **fields,
        },
    )
    assert created.status_code == 201, created.text
    credential_id = created.json()["payload"]["authCredential"]["id"]
    tested = api.post(f"{API}/authcredentials/{credential_id}/test")
    assert tested.status_code == 200, tested.text
    payload: dict[str, Any] = tested.json()["payload"]
    return payload


SENDS = {
    "basic, form (the README's)": {},
    "body, form": {"noBasic": True},
    "basic, json": {"contentType": "application/json"},
    "body, json": {"noBasic": True, "contentType": "application/json"},
}


@pytest.mark.parametrize("fields", SENDS.values(), ids=SENDS)
def test_the_example_issues_a_token(
    org: Org, token_server: RunningTokenServer, fields: dict[str, Any]
) -> None:
    with org.client() as api:
        payload = _test_credential(api, org, url=token_server.url, **fields)
    assert payload == {"success": True, "status": 200, "error": None, "expiresIn": 3600}, (
        token_server.log_text()
    )
    assert token_server.process.poll() is None


def test_the_example_refuses_a_wrong_secret(org: Org, token_server: RunningTokenServer) -> None:
    with org.client() as api:
        payload = _test_credential(api, org, url=token_server.url, clientSecret="not-it")
    assert payload["success"] is False
    assert payload["status"] == 401
    assert payload["error"]
    log = token_server.log_text()
    assert "refused" in log
    assert "not-it" not in log and SECRET not in log  # the example prints no secret
