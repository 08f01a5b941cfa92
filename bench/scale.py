"""Several processes on one PostgreSQL: API and delivery throughput with one process and
with two, in one run. Prints figures, ratios and where the CPU went; not a test.

1. API: `waypost serve --no-worker --workers N` (N = 1, then 2), loaded by wrk (2
   threads, 64 connections, from this machine) on `GET /health` (no database) and
   `GET /platform/v1/destinations/{id}` (a token lookup and a read).
2. Delivery: MESSAGES messages are queued through the send API with no worker running,
   then `waypost worker` processes (W = 1, then 2; a fresh database each) drain the queue
   to 20 loopback receivers (aiohttp, in this process), `unordered`, 100 in flight per
   worker.

Each row has its rate, its ratio to the one-process row measured in the same run, and
the CPU seconds each party used during the measured interval, as a share of the
machine's cores: Waypost's processes (Python), PostgreSQL's backends (the database), and
the load generator (wrk, or the receivers). On a machine with as many cores as the
parties need, a second process nearly doubles the rate; where the cores are already
busy (2 cores shared with the database and the load generator), the ratio says how much
headroom a core more would buy, and the CPU split says who would use it.

Usage: python bench/scale.py --postgres postgresql://user@host:5432/db
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from api_throughput import WrkResult, ensure_wrk, run_wrk, write_script
from common import (
    BenchError,
    cpu_seconds,
    create_org,
    http_json,
    new_secret_key,
    running_server,
    scratch_postgres_database,
    stop,
    waypost_executable,
)
from delivery import Api, Receipts, body_for, start_receivers

CORES = os.cpu_count() or 1
WORKER_CONCURRENCY = 100


# --- CPU accounting ------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    pids = [int(p) for p in found]
    return pids + [g for p in pids for g in _children(p)]


def tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's worker processes)."""
    return [pid, *_children(pid)]


def postgres_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends serving this database (not those of whatever else the
    server is doing meanwhile)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def _cpu_of(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            found[pid] = cpu_seconds(pid)
    return found


@dataclass
class CpuShare:
    """CPU seconds per party over an interval, as a share of the machine's cores."""

    waypost: float
    postgres: float
    load: float
    seconds: float

    def shares(self) -> str:
        total = CORES * self.seconds
        busy = self.waypost + self.postgres + self.load
        return (
            f"waypost {self.waypost / total:>4.0%}  postgres {self.postgres / total:>4.0%}  "
            f"load {self.load / total:>4.0%}  other/idle {max(0.0, 1 - busy / total):>4.0%}"
        )


class CpuMeter:
    """Measures the CPU of Waypost's processes (`waypost_pids`, with their children), of
    the PostgreSQL backends serving `database_url`, and of this process and its children
    (the load)."""

    def __init__(self, waypost_pids: list[int], database_url: str) -> None:
        self._waypost_roots = waypost_pids
        self._database_url = database_url

    def __enter__(self) -> CpuMeter:
        self._waypost = _cpu_of([p for root in self._waypost_roots for p in tree(root)])
        self._postgres = _cpu_of(postgres_pids(self._database_url))
        self._load = self._own()
        self._started = time.perf_counter()
        return self

    @staticmethod
    def _own() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self._started
        waypost_now = _cpu_of([p for root in self._waypost_roots for p in tree(root)])
        postgres_now = _cpu_of(postgres_pids(self._database_url))
        self.share = CpuShare(
            sum(v - self._waypost.get(p, 0.0) for p, v in waypost_now.items()),
            # Backends that connected meanwhile count from zero.
            sum(v - self._postgres.get(p, 0.0) for p, v in postgres_now.items()),
            self._own() - self._load,
            self.seconds,
        )


# --- API processes -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRow:
    processes: int
    health: WrkResult
    read: WrkResult
    health_cpu: CpuShare
    read_cpu: CpuShare


def bench_api(wrk: str, server_url: str, processes: int, warmup: int, seconds: int) -> ApiRow:
    waypost = waypost_executable()
    data_dir = Path(tempfile.mkdtemp(prefix="waypost-scale-"))
    try:
        with scratch_postgres_database(server_url) as url:
            env = _env(url, data_dir)
            token, dev = create_org(waypost, env)
            extra = ["--no-worker", "--workers", str(processes)]
            with running_server(waypost, env, data_dir / "server.log", *extra) as server:
                _wait_for_processes(server.pid, processes)
                status, created = http_json(
                    "POST",
                    f"{server.url}/platform/v1/environments/{dev}/destinations",
                    token,
                    {"name": "bench", "endpoint": "http://example.test/hook"},
                )
                if status != 201:
                    raise BenchError(f"creating a destination failed ({status}): {created}")
                destination = created["payload"]["destination"]["id"]
                read = f"{server.url}/platform/v1/destinations/{destination}"
                script = write_script(data_dir / "read.lua", token)
                measured = []
                for label, target, lua in (
                    ("GET /health", f"{server.url}/health", None),
                    ("GET destination", read, script),
                ):
                    print(f"  API, {processes} process(es): {label} ...", flush=True)
                    run_wrk(wrk, target, lua, warmup)
                    with CpuMeter([server.pid], url) as meter:
                        result = run_wrk(wrk, target, lua, seconds)
                    measured.append((result, meter.share))
        (health, health_cpu), (found, read_cpu) = measured
        return ApiRow(processes, health, found, health_cpu, read_cpu)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _wait_for_processes(parent: int, count: int) -> None:
    """uvicorn starts `count` worker processes under the parent (one process: itself)."""
    if count == 1:
        return
    deadline = time.monotonic() + 30
    while len(_children(parent)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"waypost serve --workers {count} did not start {count} processes")
        time.sleep(0.1)


def _env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    env.update(
        WAYPOST_DATA_DIR=str(data_dir),
        WAYPOST_DATABASE_URL=url,
        WAYPOST_SECRET_KEY=new_secret_key(),
        # wrk speaks from one address: the limiter stays in the path, out of reach.
        WAYPOST_RATE_LIMIT_REQUESTS=str(10**9),
        WAYPOST_OUTBOUND_ALLOW="127.0.0.0/8",
        WAYPOST_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
        # Connections per process: several processes stay within max_connections (100).
        WAYPOST_DB_POOL_SIZE="8",
    )
    return env


# --- delivery workers ------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRow:
    workers: int
    rate: float  # messages received per second, queue full at the start
    cpu: CpuShare
    messages: int


@contextlib.contextmanager
def workers(waypost: str, env: dict[str, str], data_dir: Path, count: int) -> Iterator[list[int]]:
    processes = []
    logs = []
    try:
        for n in range(count):
            log_path = data_dir / f"worker-{n}.log"
            log = log_path.open("wb")
            logs.append((log, log_path))
            processes.append(
                subprocess.Popen(
                    [waypost, "worker", "--concurrency", str(WORKER_CONCURRENCY)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield [p.pid for p in processes]
    finally:
        for process, (log, log_path) in zip(processes, logs, strict=False):
            stop(process, log_path)
            log.close()


async def _fill_and_drain(
    database_url: str,
    waypost: str,
    env: dict[str, str],
    data_dir: Path,
    base: str,
    token: str,
    dev: str,
    count: int,
    messages: int,
) -> DeliveryRow:
    receipts = Receipts()
    urls, runners = await start_receivers(receipts)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            api = Api(session, base, token)
            destinations = await api.destinations(dev, urls, "unordered")
            source_token = await api.source(dev, destinations)
            receipts.expected = messages
            headers = {
                "Authorization": f"Bearer {source_token}",
                "Content-Type": "application/json",
            }
            bodies = [
                orjson.dumps(body_for(n, destinations[n % len(destinations)]))
                for n in range(messages)
            ]
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            for body in bodies:
                queue.put_nowait(body)

            async def send() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    async with session.post(base + "/endpoint", data=body, headers=headers) as r:
                        if r.status != 200:
                            raise BenchError(f"the send API answered {r.status}: {await r.text()}")

            print(f"  delivery, {count} worker(s): queueing {messages:,} messages ...", flush=True)
            await asyncio.gather(*(send() for _ in range(32)))
        print(f"  delivery, {count} worker(s): draining ...", flush=True)
        with workers(waypost, env, data_dir, count) as pids, CpuMeter(pids, database_url) as meter:
            await asyncio.wait_for(receipts.done.wait(), timeout=900)
            # From the first receipt to the last: the workers' start-up is not delivery.
            rate = (messages - 1) / (max(receipts.at.values()) - min(receipts.at.values()))
        return DeliveryRow(count, rate, meter.share, messages)
    finally:
        for runner in runners:
            await runner.cleanup()


def bench_delivery(server_url: str, count: int, messages: int) -> DeliveryRow:
    waypost = waypost_executable()
    data_dir = Path(tempfile.mkdtemp(prefix="waypost-scale-"))
    try:
        with scratch_postgres_database(server_url) as url:
            env = _env(url, data_dir)
            token, dev = create_org(waypost, env)
            with running_server(waypost, env, data_dir / "server.log", "--no-worker") as server:
                return asyncio.run(
                    _fill_and_drain(
                        url, waypost, env, data_dir, server.url, token, dev, count, messages
                    )
                )
    except BenchError:
        for log in sorted(data_dir.glob("*.log")):
            print(f"--- the end of {log.name}:\n{log.read_text()[-3000:]}", flush=True)
        raise
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# --- the report --------------------------------------------------------------------------------


def report_api(rows: list[ApiRow], seconds: int) -> None:
    print(
        f"\nAPI on PostgreSQL: waypost serve --workers N, wrk -t2 -c64, {seconds} s, {CORES} cores"
    )
    print(f"{'route':<18} {'N':>2} {'req/s':>8} {'x N=1':>6} {'p99':>9}  CPU share of the machine")
    print("-" * 110)
    base = rows[0]
    for row in rows:
        for label, result, cpu, first in (
            ("GET /health", row.health, row.health_cpu, base.health),
            ("GET destination", row.read, row.read_cpu, base.read),
        ):
            ratio = result.requests_per_second / first.requests_per_second
            print(
                f"{label:<18} {row.processes:>2} {result.requests_per_second:>8.0f} "
                f"{ratio:>5.2f}x {result.p99_ms:>7.1f}ms  {cpu.shares()}"
            )
    for row in rows:
        per_request = row.read_cpu.waypost / (row.read.requests_per_second * row.read_cpu.seconds)
        db = row.read_cpu.postgres / (row.read.requests_per_second * row.read_cpu.seconds)
        print(
            f"GET destination, N={row.processes}: {per_request * 1000:.2f} ms of Waypost CPU and "
            f"{db * 1000:.2f} ms of PostgreSQL CPU per request; "
            f"{row.read.requests_per_second / row.health.requests_per_second:.2f} x /health"
        )


def report_delivery(rows: list[DeliveryRow]) -> None:
    print(
        f"\nDelivery on PostgreSQL: waypost worker x W, {rows[0].messages:,} queued messages, "
        f"unordered, 20 receivers, {WORKER_CONCURRENCY} in flight per worker"
    )
    print(
        f"{'W':>2} {'msg/s':>8} {'x W=1':>6}  {'CPU/msg: waypost':>17} {'postgres':>9}  CPU share"
    )
    print("-" * 110)
    for row in rows:
        done = row.rate * row.cpu.seconds
        print(
            f"{row.workers:>2} {row.rate:>8.0f} {row.rate / rows[0].rate:>5.2f}x  "
            f"{row.cpu.waypost * 1000 / done:>15.2f}ms {row.cpu.postgres * 1000 / done:>7.2f}ms  "
            f"{row.cpu.shares()}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="the PostgreSQL server (a scratch database is made per run)",
    )
    parser.add_argument("--seconds", type=int, default=10, help="each measured wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="each warm-up wrk run")
    parser.add_argument("--messages", type=int, default=10_000, help="messages per delivery run")
    args = parser.parse_args(argv)
    try:
        wrk = ensure_wrk()
        api_rows = [bench_api(wrk, args.postgres, n, args.warmup, args.seconds) for n in (1, 2)]
        report_api(api_rows, args.seconds)
        delivery_rows = [bench_delivery(args.postgres, w, args.messages) for w in (1, 2)]
        report_delivery(delivery_rows)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
