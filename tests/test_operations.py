"""What an operator meets: readiness when the database goes away, lists longer than one
default page, and the command line writing to the SQLite file while the server takes
traffic. Each test runs a server of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import Server, scratch_postgres_database, server_for, start_server

API = "/platform/v1"
WAYPOST = str(Path(sys.executable).with_name("waypost"))


@pytest.fixture(params=["sqlite", "postgres"])
def own_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from server_for(request, tmp_path_factory, "operations")


# --- /ready ---------------------------------------------------------------------------------


def test_ready_answers_503_when_the_database_is_unreachable(
    postgres_server_url: str, tmp_path: Path
) -> None:
    with scratch_postgres_database(postgres_server_url) as url:
        server = start_server("postgres", url, tmp_path)
        try:
            with server.client() as api:
                assert api.get("/ready").json() == {"status": "ready"}
                admin = sa.create_engine(
                    postgres_server_url.replace("postgresql://", "postgresql+psycopg://", 1),
                    isolation_level="AUTOCOMMIT",
                )
                name = sa.make_url(url).database
                with admin.connect() as conn:
                    # Ends the server's connections too: the database is gone.
                    conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                admin.dispose()
                gone = api.get("/ready")
                assert gone.status_code == 503, gone.text
                assert gone.headers["content-type"].startswith("application/problem+json")
                assert gone.json()["status"] == 503
                assert gone.json()["detail"] == "The database is not reachable."
                # Liveness does not depend on the database.
                assert api.get("/health").status_code == 200
        finally:
            server.stop()


# --- lists beyond the default 1,000 ---------------------------------------------------------


def test_a_list_of_more_than_a_thousand_pages_with_the_cursor(own_server: Server) -> None:
    org = own_server.new_org()
    total = 1003

    def make(chunk: range) -> list[str]:
        with org.client() as api:
            made = []
            for n in chunk:
                response = api.post(
                    f"{API}/environments/{org.dev}/destinations", json={"name": f"d{n}"}
                )
                assert response.status_code == 201, response.text
                made.append(response.json()["payload"]["destination"]["id"])
            return made

    with ThreadPoolExecutor(max_workers=4) as pool:
        chunks = [range(n, total, 4) for n in range(4)]
        created = {i for made in pool.map(make, chunks) for i in made}
    with org.client() as api:
        first = api.get(f"{API}/environments/{org.dev}/destinations")
        assert first.status_code == 200, first.text
        page = first.json()
        assert len(page["payload"]["destinations"]) == 1000
        next_url = page["meta"]["links"]["next"]
        assert "_cursor=" in next_url
        rest = api.get(next_url)
        assert rest.status_code == 200, rest.text
        assert "links" not in rest.json()["meta"]
    listed = page["payload"]["destinations"] + rest.json()["payload"]["destinations"]
    assert len(listed) == total
    assert {d["id"] for d in listed} == created


# --- several processes writing one SQLite file ----------------------------------------------


def test_the_cli_writes_while_the_server_takes_traffic(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Another process (the command line, issuing tokens) writes the server's SQLite file
    while the server itself writes under load: every write of both lands, none fails with
    "database is locked"."""
    data_dir = tmp_path_factory.mktemp("sqlite-processes")
    server = start_server("sqlite", f"sqlite:///{data_dir / 'waypost.db'}", data_dir)
    try:
        # Set up over the CLI too, so this process never opens the server's file.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env.update(
            WAYPOST_DATABASE_URL=server.settings.database_url or "",
            WAYPOST_SECRET_KEY=server.settings.secret_key,
            WAYPOST_DATA_DIR=str(data_dir),
        )
        org = cli_json(env, "orgs", "create", "--name", "Busy", "--owner-email", "o@x.test")
        owner_token = org["token"]
        dev = next(e["id"] for e in org["environments"] if e["environmentFlag"] == "Development")
        stop = threading.Event()
        made: list[str] = []
        failures: list[str] = []

        def traffic(worker: int) -> None:
            with server.client(owner_token) as api:
                n = 0
                while not stop.is_set():
                    response = api.post(
                        f"{API}/environments/{dev}/destinations", json={"name": f"w{worker}-{n}"}
                    )
                    if response.status_code == 201:
                        made.append(response.json()["payload"]["destination"]["id"])
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                    n += 1

        threads = [threading.Thread(target=traffic, args=(w,)) for w in range(2)]
        for thread in threads:
            thread.start()
        try:
            issued = [
                cli_json(env, "tokens", "create", "--user", org["user"]["id"]) for _ in range(2)
            ]
            users = [
                cli_json(
                    env,
                    "users",
                    "create",
                    "--org",
                    str(org["organization"]["id"]),
                    "--email",
                    f"u{n}@x.test",
                    "--role",
                    f"{dev}=viewer",
                )
                for n in range(1)
            ]
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        assert not failures, failures[:5]
        assert len(made) > 20, "the server took too little traffic to overlap the commands"
        # Every token the CLI issued works, and every destination the server made is there.
        for token in [i["token"] for i in issued] + [u["token"] for u in users]:
            with server.client(token) as api:
                assert api.get(f"{API}/environments/{dev}/destinations").status_code == 200
        with server.client(owner_token) as api:
            listed = []
            url: str | None = f"{API}/environments/{dev}/destinations"
            while url is not None:
                page = api.get(url).json()
                listed += [d["id"] for d in page["payload"]["destinations"]]
                url = (page["meta"].get("links") or {}).get("next")
        assert set(made) <= set(listed)
        assert len(listed) == len(made)
    finally:
        server.stop()


def cli_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [WAYPOST, *args, "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "locked" not in done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data
