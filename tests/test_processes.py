"""Several processes on one PostgreSQL: what must hold across them holds in the database.

Real processes, as an operator starts them: two `waypost serve --no-worker` API
processes (A and B, each on a port of its own, so which process answers is certain) and
one `waypost worker`, all on one fresh PostgreSQL database, rate-limited to LIMIT
requests per minute per client address. Each test speaks from a loopback address of its
own, so the tests do not share a budget. Across the processes:

- the rate limit is one budget per address, whichever process answers;
- a client assertion's `jti` is accepted once;
- an idempotency key answers the first answer again, and queues nothing more;
- an auth credential's token fetched by one process is the one another sends.

And `waypost serve --workers N` runs N API processes on one port (refused on SQLite).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.credentials.helpers import oauth_fields
from tests.credentials.token_server import TokenServer
from tests.delivery.support import TOKEN, Script, message, scripted
from tests.support import free_port, scratch_postgres_database
from waypost.crypto import new_secret_key
from waypost.db import migrate

WAYPOST = str(Path(sys.executable).with_name("waypost"))
API = "/platform/v1"
LIMIT = 20
PUBLIC_URL = "http://waypost.test"  # the same `aud` whichever process takes the assertion
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

_addresses = itertools.count(2)


def new_address() -> str:
    """A loopback address no other test of this module speaks from."""
    n = next(_addresses)
    return f"127.0.{n // 250 + 40}.{n % 250 + 2}"


@dataclass
class Process:
    """A waypost command running in a process of its own; its output is kept, and
    `ready` is set when it prints `ready_line` (`ready_count` times)."""

    args: list[str]
    env: dict[str, str]
    ready_line: str
    ready_count: int = 1
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    popen: subprocess.Popen[str] | None = None

    def start(self) -> Process:
        self.popen = subprocess.Popen(
            [WAYPOST, *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            self.stop()
            raise AssertionError(f"waypost {' '.join(self.args)} did not start:\n{self.log}")
        return self

    def _read(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        seen = 0
        for line in self.popen.stdout:
            self.output.append(line)
            if self.ready_line in line:
                seen += 1
                if seen >= self.ready_count:
                    self.ready.set()
        self.ready.set()  # it ended: whoever waits finds out from the exit code

    @property
    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def api_process(env: dict[str, str], *extra: str) -> tuple[Process, str]:
    port = free_port()
    process = Process(
        ["serve", "--port", str(port), "--no-access-log", "--no-worker", *extra],
        env,
        "Application startup complete",
    )
    return process, f"http://127.0.0.1:{port}"


@dataclass
class Installation:
    env: dict[str, str]
    a: str  # base URLs of the two API processes
    b: str
    token: str  # the owner's Platform API token
    user_id: str
    dev: str  # the Development environment's id
    processes: list[Process]

    def client(self, base: str, address: str, token: str | None = None) -> httpx.Client:
        bearer = token if token is not None else self.token
        return httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {bearer}"} if bearer else {},
            timeout=30,
            transport=httpx.HTTPTransport(local_address=address),
        )

    def command(self, *args: str) -> Any:
        done = subprocess.run(
            [WAYPOST, *args, "--json"], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def installation(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    data_dir = tmp_path_factory.mktemp("processes")
    with scratch_postgres_database(postgres_server_url) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env.update(
            WAYPOST_DATABASE_URL=url,
            WAYPOST_DATA_DIR=str(data_dir),
            WAYPOST_SECRET_KEY=new_secret_key(),
            WAYPOST_DB_POOL_SIZE="3",
            WAYPOST_RATE_LIMIT_REQUESTS=str(LIMIT),
            WAYPOST_RATE_LIMIT_WINDOW_SECONDS="60",
            WAYPOST_OUTBOUND_ALLOW="127.0.0.0/8",
            WAYPOST_PUBLIC_URL=PUBLIC_URL,
            WAYPOST_RETRY_SCALE="0.001",
        )
        migrate(url)
        created = subprocess.run(
            [WAYPOST, "orgs", "create", "--name", "Multi", "--owner-email", "o@x.test", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        org = json.loads(created.stdout)
        dev = next(e["id"] for e in org["environments"] if e["environmentFlag"] == "Development")
        a, a_url = api_process(env)
        b, b_url = api_process(env)
        worker = Process(["worker", "--concurrency", "10"], env, ": delivering")
        processes = [a, b, worker]
        try:
            for process in processes:
                process.start()
            yield Installation(env, a_url, b_url, org["token"], org["user"]["id"], dev, processes)
        finally:
            for process in processes:
                process.stop()


# --- the rate limit -------------------------------------------------------------------------


def test_the_rate_limit_is_one_budget_across_processes(installation: Installation) -> None:
    address = new_address()
    path = f"{API}/environments/{installation.dev}/destinations"
    with (
        installation.client(installation.a, address) as a,
        installation.client(installation.b, address) as b,
    ):
        answers = [(a if n % 2 == 0 else b).get(path) for n in range(LIMIT + 10)]
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == LIMIT, statuses
    assert statuses[:LIMIT] == [200] * LIMIT
    assert set(statuses[LIMIT:]) == {429}
    refused = answers[LIMIT]
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-reset"] == refused.headers["retry-after"]
    # Both processes refuse this address now, each from what the database holds.
    assert {r.status_code for r in answers[LIMIT : LIMIT + 2]} == {429}
    # Another address still has its whole budget.
    with installation.client(installation.b, new_address()) as b:
        fresh = b.get(path)
    assert fresh.status_code == 200
    assert fresh.headers["x-ratelimit-remaining"] == str(LIMIT - 1)


# --- token replay protection ----------------------------------------------------------------


def test_a_client_assertion_is_accepted_once_across_processes(
    installation: Installation,
) -> None:
    key = installation.command("keys", "create", "--user", installation.user_id, "--generate")
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": key["clientId"],
            "sub": key["clientId"],
            "aud": f"{PUBLIC_URL}/v2/auth/token",
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        },
        key["privateKey"],
        algorithm="ES384",
        headers={"kid": key["kids"][0]},
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    address = new_address()
    with (
        installation.client(installation.a, address, token="") as a,
        installation.client(installation.b, address, token="") as b,
    ):
        first = a.post("/v2/auth/token", data=form)
        replayed = b.post("/v2/auth/token", data=form)
    assert first.status_code == 200, first.text
    assert replayed.status_code in (400, 401), replayed.text
    assert "already used" in replayed.json()["error_description"]


# --- idempotency keys and the credential token cache, with a worker delivering --------------


def _send_setup(
    installation: Installation, api: httpx.Client, endpoint: str, credential_id: str | None
) -> tuple[str, str]:
    """A verified destination at `endpoint` (with the credential) and a source subscribed
    to it: (destination id, the source's send token)."""
    body: dict[str, Any] = {
        "name": f"Receiver {uuid.uuid4().hex[:6]}",
        "endpoint": endpoint,
        "verificationToken": TOKEN,
    }
    if credential_id:
        body["authCredential"] = credential_id
    created = api.post(f"{API}/environments/{installation.dev}/destinations", json=body)
    assert created.status_code == 201, created.text
    destination = created.json()["payload"]["destination"]["id"]
    verified = api.post(f"{API}/destinations/{destination}/verify")
    assert verified.status_code == 200, verified.text
    source = api.post(f"{API}/environments/{installation.dev}/sources", json={"name": "feed"})
    assert source.status_code == 201, source.text
    found = source.json()["payload"]["source"]
    subscribed = api.post(
        f"{API}/environments/{installation.dev}/subscriptions",
        json={
            "source": {"id": found["id"]},
            "destination": {"id": destination},
            "dataModel": "PatientAdmin",
        },
    )
    assert subscribed.status_code == 201, subscribed.text
    auth = api.post("/auth/authenticate", json={"apiKey": found["id"], "secret": found["secret"]})
    assert auth.status_code == 200, auth.text
    return destination, auth.json()["accessToken"]


def test_an_idempotency_key_holds_across_processes(installation: Installation) -> None:
    script = Script()
    with scripted(script) as receiver, installation.client(installation.a, new_address()) as api:
        destination, send_token = _send_setup(installation, api, receiver.url, None)
        headers = {"Authorization": f"Bearer {send_token}", "Idempotency-Key": "order-1"}
        body = message(1, destination)
        with (
            httpx.Client(base_url=installation.a, timeout=30) as a,
            httpx.Client(base_url=installation.b, timeout=30) as b,
        ):
            first = a.post("/endpoint", json=body, headers=headers)
            again = b.post("/endpoint", json=body, headers=headers)
            changed = b.post("/endpoint", json=message(2, destination), headers=headers)
            other = b.post(
                "/endpoint", json=body, headers={**headers, "Idempotency-Key": "order-2"}
            )
        assert first.status_code == 200, first.text
        assert again.status_code == 200, again.text
        assert again.json()["Meta"]["Logs"] == first.json()["Meta"]["Logs"]
        assert changed.status_code == 409, changed.text
        assert other.status_code == 200, other.text
        # The worker process delivers two messages: the key queued nothing the second time.
        delivered = script.wait_delivered(2)
    logs = sorted(d["Meta"]["Logs"][0]["ID"] for d in delivered)
    expected = sorted(r.json()["Meta"]["Logs"][0]["ID"] for r in (first, other))
    assert logs == expected


def test_a_credential_token_fetched_by_one_process_is_sent_by_another(
    installation: Installation,
) -> None:
    script = Script()
    with (
        TokenServer() as token_server,
        scripted(script) as receiver,
        installation.client(installation.a, new_address()) as api,
    ):
        created = api.post(
            f"{API}/authcredentials",
            json={
                "environmentId": installation.dev,
                "name": f"OAuth {uuid.uuid4().hex[:6]}",
                **oauth_fields(token_server.url),
            },
        )
        assert created.status_code == 201, created.text
        credential_id = created.json()["payload"]["authCredential"]["id"]
        # Process A fetches a token (the test route always fetches) and keeps it.
        tested = api.post(f"{API}/authcredentials/{credential_id}/test")
        assert tested.json()["payload"]["success"] is True, tested.text
        assert token_server.issued == 1
        destination, send_token = _send_setup(installation, api, receiver.url, credential_id)
        # Process B accepts; the worker process delivers, with A's token.
        with httpx.Client(base_url=installation.b, timeout=30) as b:
            for n in range(3):
                sent = b.post(
                    "/endpoint",
                    json=message(n, destination),
                    headers={"Authorization": f"Bearer {send_token}"},
                )
                assert sent.status_code == 200, sent.text
        script.wait_delivered(3)
        bearers = {headers["authorization"] for _, headers, _ in script.deliveries}
        assert len(bearers) == 1, bearers
        assert bearers.pop().startswith("Bearer token-1-")
        assert token_server.issued == 1


# --- serve --workers ------------------------------------------------------------------------


def test_serve_workers_runs_that_many_api_processes_on_one_port(
    installation: Installation,
) -> None:
    process, base = api_process(installation.env, "--workers", "2")
    process.ready_count = 2  # each API process says so when it has started
    process.start()
    try:
        assert process.popen is not None
        parent = process.popen.pid
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        serving = [pid for pid in children if "waypost" in _cmdline(pid) or _is_python(pid)]
        assert len(serving) >= 2, (children, process.log)
        with installation.client(base, new_address()) as api:
            for _ in range(4):
                answer = api.get(f"{API}/environments/{installation.dev}/destinations")
                assert answer.status_code == 200, answer.text
    finally:
        process.stop()
    assert process.popen is not None and process.popen.returncode in (0, 143, -15)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _is_python(pid: str) -> bool:
    return "python" in _cmdline(pid)


def test_serve_workers_is_refused_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    env["WAYPOST_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [WAYPOST, "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--workers 2 needs PostgreSQL" in done.stderr
    assert not (tmp_path / "waypost.db").exists()  # refused before touching anything
