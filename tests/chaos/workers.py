"""`waypost worker` as a process of its own, for the chaos runs to SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.support import LOOPBACK, Server


def start_worker(
    server: Server, *, delivery_timeout_seconds: float, **env: str
) -> subprocess.Popen[bytes]:
    """A worker on the server's database, retrying a thousand times sooner; `env` adds
    WAYPOST_* settings. What it says goes to a file of its own (see `worker_output`)."""
    settings = server.settings
    variables = {
        **os.environ,
        "WAYPOST_DATABASE_URL": settings.resolved_database_url(),
        "WAYPOST_SECRET_KEY": settings.secret_key,
        "WAYPOST_DATA_DIR": str(settings.data_dir),
        "WAYPOST_OUTBOUND_ALLOW": LOOPBACK,
        # A killed worker's claims come back after the lease: timeouts + 5 s.
        "WAYPOST_DELIVERY_TIMEOUT_SECONDS": str(delivery_timeout_seconds),
        "WAYPOST_VERIFY_TIMEOUT_SECONDS": "0.5",
        "WAYPOST_RETRY_SCALE": "0.001",
        **env,
    }
    output = settings.data_dir / f"worker-{time.monotonic_ns()}.out"
    with output.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "waypost.cli", "worker", "--concurrency", "20"],
            env=variables,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def worker_output(server: Server) -> str:
    """What the workers wrote, newest last."""
    files = sorted(server.settings.data_dir.glob("worker-*.out"))
    return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}" for f in files)
