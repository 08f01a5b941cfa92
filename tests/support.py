"""Test support: real databases and a real server, started once per backend."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from waypost.app import create_app
from waypost.auth import service as auth_service
from waypost.crypto import new_secret_key
from waypost.db import Database, migrate
from waypost.kinds import EnvRole, OrgRole
from waypost.settings import Settings

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def sqlite_bytes(server: Server) -> bytes:
    """The raw bytes of a SQLite server's database file and its write-ahead log.

    Read by another process: closing any descriptor of the database file in this process
    would drop the POSIX locks the running server (a thread here) holds on it, and let
    other processes write to the database under its feet (SQLite's "how to corrupt").
    """
    url = server.settings.resolved_database_url()
    assert url.startswith("sqlite:///"), url
    path = url.removeprefix("sqlite:///")
    read = (
        "import pathlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    p = pathlib.Path(name)\n"
        "    sys.stdout.buffer.write(p.read_bytes() if p.exists() else b'')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", read, path, f"{path}-wal", f"{path}-journal"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def listening_process(
    command: list[str], port: int, log: Path, *, cwd: Path | None = None, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a program (its output in `log`) until it listens on `port` on loopback; stops
    it when the block ends (terminated, then killed if it lingers). Raises RuntimeError,
    with what it printed, when it exits early or does not listen within `timeout`."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                said = log.read_text(errors="replace")
                raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{said}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    said = log.read_text(errors="replace")
                    raise RuntimeError(f"{command[0]} did not listen on {port}:\n{said}") from None
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _postgres_reachable(url: str) -> bool:
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1),
        connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


class PrivateCluster:
    """A throwaway PostgreSQL cluster, for machines with the binaries but no server."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        found = shutil.which("initdb")
        initdb = str(bins[-1]) if bins else found
        if initdb is None:
            raise FileNotFoundError("initdb")
        self.bin = Path(initdb).parent
        self.dir = Path(tempfile.mkdtemp(prefix="waypost-pg-"))
        self.port = free_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            f"{self.dir}/data",
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            f"{self.dir}/data",
            "-l",
            f"{self.dir}/log",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_postgres, *args], check=True, capture_output=True)

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data", "-m", "fast", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def find_postgres() -> tuple[str | None, PrivateCluster | None, str]:
    """(server URL, cluster to stop afterwards, how it was found or why not)."""
    explicit = os.environ.get("WAYPOST_TEST_POSTGRES_URL")
    if explicit:
        return explicit, None, "WAYPOST_TEST_POSTGRES_URL"
    if _postgres_reachable(DEFAULT_POSTGRES):
        return DEFAULT_POSTGRES, None, "127.0.0.1:5432"
    try:
        cluster = PrivateCluster()
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        return None, None, f"no server on 127.0.0.1:5432 and no private cluster ({exc})"
    return cluster.url, cluster, "a private throwaway cluster"


@contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A new database per test run, so runs never see each other's rows."""
    name = f"waypost_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        server_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Server:
    """A running Waypost on loopback, with helpers to set up organizations and users."""

    backend: str
    settings: Settings
    base_url: str
    _thread: threading.Thread
    _server: uvicorn.Server
    data_dir: Path
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def run(self, coro: Any) -> Any:
        """Runs service code against the same database, from the test's thread."""

        async def with_db() -> Any:
            db = Database(self.settings.resolved_database_url(), pool_size=2)
            try:
                return await coro(db)
            finally:
                await db.close()

        return self._loop.run_until_complete(with_db())

    def new_org(self, name: str = "Acme") -> Org:
        enrolled = self.run(
            lambda db: auth_service.enroll_organization(
                db, name=name, owner_email=f"owner-{uuid.uuid4()}@x.test"
            )
        )
        created = enrolled.organization
        envs = {e.flag.value: e.id for e in created.environments}
        return Org(self, created.id, envs, created.owner.id, enrolled.token.token)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._loop.close()


@dataclass
class Org:
    server: Server
    id: int
    envs: dict[str, str]  # environmentFlag -> environment id
    owner_id: str
    owner_token: str

    @property
    def dev(self) -> str:
        return self.envs["Development"]

    @property
    def staging(self) -> str:
        return self.envs["Staging"]

    @property
    def prod(self) -> str:
        return self.envs["Production"]

    def user(self, org_role: str = "member", **roles_by_flag: str) -> str:
        """A new user with the given roles (e.g. Development="viewer"); returns a token."""
        env_roles = {self.envs[flag]: EnvRole(role) for flag, role in roles_by_flag.items()}
        new = self.server.run(
            lambda db: auth_service.enroll_user(
                db,
                organization_id=self.id,
                email=f"user-{uuid.uuid4()}@x.test",
                org_role=OrgRole(org_role),
                env_roles=env_roles,
            )
        )
        token: str = new.token.token
        return token

    def client(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token or self.owner_token)


# Test receivers listen on loopback, so the shared test servers let loopback through.
LOOPBACK = "127.0.0.0/8,::1/128"


def start_server(backend: str, database_url: str, data_dir: Path, **overrides: Any) -> Server:
    """`overrides` are Settings fields, e.g. outbound_allow="" or ca_bundle=path."""
    fields: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": new_secret_key(),
        "db_pool_size": 5,
        "outbound_allow": LOOPBACK,
        "verify_timeout_seconds": 2.0,
        # The suite sends far more than Redox's 10,000 per 5 minutes from one address.
        "rate_limit_requests": 0,
        **overrides,
    }
    settings = Settings(**fields)
    migrate(settings.resolved_database_url())
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the {backend} test server did not start")
        time.sleep(0.02)
    return Server(backend, settings, f"http://127.0.0.1:{port}", thread, server, data_dir)


def server_for(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    label: str,
    **overrides: Any,
) -> Iterator[Server]:
    """A server on the backend a fixture is parametrized with (sqlite or postgres), on a
    fresh database of its own; stopped when the fixture ends, and failed then if its
    delivery worker logged an error meanwhile (`no_worker_errors`)."""
    backend: str = request.param
    data_dir = tmp_path_factory.mktemp(f"{backend}-{label}")
    with no_worker_errors():
        if backend == "sqlite":
            running = start_server(
                backend, f"sqlite:///{data_dir / 'waypost.db'}", data_dir, **overrides
            )
            try:
                yield running
            finally:
                running.stop()
            return
        server_url = request.getfixturevalue("postgres_server_url")
        with scratch_postgres_database(server_url) as url:
            running = start_server(backend, url, data_dir, **overrides)
            try:
                yield running
            finally:
                running.stop()


def sqlite_script(server: Server, script: str) -> None:
    """Runs SQL on a SQLite server's database from another process (see sqlite_bytes for
    why not from this one)."""
    url = server.settings.resolved_database_url()
    assert url.startswith("sqlite:///"), url
    run = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n"
        "conn.executescript(sys.argv[2])\n"
        "conn.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", run, url.removeprefix("sqlite:///"), script],
        capture_output=True,
        check=True,
        timeout=60,
    )


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(self.format(record))


@contextmanager
def no_worker_errors() -> Iterator[None]:
    """Fails if the delivery worker logs an error meanwhile. A receiver's or a storage
    account's failures are outcomes the worker records; it logs an error only when
    something went wrong in Waypost (a claim round or a task that failed), which tests
    would otherwise pass over: the work gets done after a pause."""
    errors = _Errors()
    worker_log = logging.getLogger("waypost.delivery")
    worker_log.addHandler(errors)
    try:
        yield
    finally:
        worker_log.removeHandler(errors)
    assert not errors.seen, "the delivery worker logged errors:\n" + "\n".join(errors.seen)
