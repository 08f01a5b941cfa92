"""What the benchmarks share: the waypost command, a server process, an organization,
scratch PostgreSQL databases. Not a benchmark itself."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# uvicorn exits 0 after a graceful SIGTERM shutdown; 143 (128 + 15) or -15 (Popen's
# "killed by signal 15") mean the signal ended it directly. All three are a clean stop.
CLEAN_EXITS = {0, 143, -signal.SIGTERM}


class BenchError(Exception):
    """Set-up failed; the message says what to fix."""


def waypost_executable() -> str:
    beside_python = Path(sys.executable).parent / "waypost"
    if beside_python.exists():
        return str(beside_python)
    repo_venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "waypost"
    if repo_venv.exists():
        return str(repo_venv)
    found = shutil.which("waypost")
    if found:
        return found
    raise BenchError("the waypost command is not installed; run `make` targets from the repo")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_json(
    method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def create_org(waypost: str, env: dict[str, str]) -> tuple[str, str]:
    """(token, Development environment id) of a new organization."""
    result = subprocess.run(
        [waypost, "orgs", "create", "--name", "Bench", "--owner-email", "b@x.test", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"`waypost orgs create` failed:\n{result.stderr.strip()}")
    created = json.loads(result.stdout)
    dev = next(e["id"] for e in created["environments"] if e["environmentFlag"] == "Development")
    return str(created["token"]), str(dev)


@dataclass(frozen=True)
class Running:
    url: str
    pid: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_server(
    waypost: str, env: dict[str, str], log_path: Path, *extra: str
) -> Iterator[Running]:
    """One `waypost serve` process (`extra` options added); yields its base URL and pid,
    and stops it with SIGTERM."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [waypost, "serve", "--port", str(port), "--no-access-log", *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_healthy(process, base_url, log_path)
            yield Running(base_url, process.pid)
        finally:
            stop(process, log_path)


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"waypost serve exited with {process.returncode}:\n{log_path.read_text()}"
            )
        with contextlib.suppress(OSError):
            status, _ = http_json("GET", f"{base_url}/health")
            if status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"waypost serve did not answer /health within 30 s:\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            print("warning: waypost serve ignored SIGTERM for 20 s and was killed", flush=True)
            return
    if process.returncode not in CLEAN_EXITS:
        print(
            f"warning: waypost serve exited with {process.returncode} after SIGTERM:\n"
            f"{log_path.read_text()[-2000:]}",
            flush=True,
        )


# --- PostgreSQL -----------------------------------------------------------------------


@contextlib.contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A new database on the given server for this run, dropped afterwards."""
    import psycopg

    name = f"waypost_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
    except psycopg.Error as exc:
        raise BenchError(f"cannot create a scratch database on {server_url}: {exc}") from None
    url = urllib.parse.urlsplit(server_url)._replace(path=f"/{name}").geturl()
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def new_secret_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
