"""Throughput of one `waypost serve` process, measured with wrk. Prints figures; not a test.

For each backend (SQLite always, PostgreSQL with --postgres URL) this sets up a fresh data
directory and organization, starts a single server process, and drives three routes with
wrk (2 threads, 64 connections, a warm-up run and then a measured run):

  GET  /health                                       the baseline: no database, no auth
  GET  /platform/v1/destinations/{id}                target: at least 0.50 x /health
                                                     (0.35 on PostgreSQL, a round trip away)
  POST /platform/v1/environments/{envId}/destinations  target: at least 0.25 x /health

Ratios compare routes measured in the same run on the same machine, so they say more than
the absolute figures, which depend on the machine and whatever else it is doing.

Usage: python bench/api_throughput.py [--postgres postgresql://user@host:5432/db]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    BenchError,
    create_org,
    http_json,
    new_secret_key,
    running_server,
    scratch_postgres_database,
    waypost_executable,
)

WRK_THREADS = 2
WRK_CONNECTIONS = 64
CREATE_BODY = '{"name":"bench","endpoint":"http://example.test/hook"}'


@dataclass(frozen=True)
class Route:
    label: str
    path: str
    script: Path | None  # a wrk Lua script, for the method, body and headers
    target: float | None  # minimum ratio to /health; None for the baseline itself


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    total_requests: int


# --- wrk ------------------------------------------------------------------------------


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if os.geteuid() != 0 and shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        [*prefix, "apt-get", *args], env=env, capture_output=True, text=True, check=False
    )


def ensure_wrk() -> str:
    """The path of wrk, installing it with apt-get when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if not shutil.which("apt-get"):
        raise BenchError("wrk is not installed and apt-get is unavailable; install wrk first")
    print("wrk not found; installing it with apt-get", flush=True)
    result = _apt_get("install", "-y", "wrk")
    if result.returncode != 0:
        print("apt-get install failed; running apt-get update and trying again", flush=True)
        _apt_get("update")
        result = _apt_get("install", "-y", "wrk")
    found = shutil.which("wrk")
    if result.returncode != 0 or not found:
        raise BenchError(f"could not install wrk with apt-get:\n{result.stderr.strip()}")
    return found


_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _SECONDS[unit] * 1000


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    if not rps or not p99 or not total:
        raise BenchError(f"could not read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p99_ms=_to_ms(p99.group(1), p99.group(2)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        total_requests=int(total.group(1)),
    )


def run_wrk(wrk: str, url: str, script: Path | None, seconds: int) -> WrkResult:
    args = [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    result = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return parse_wrk(result.stdout)


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def write_script(path: Path, token: str, *, method: str = "GET", body: str | None = None) -> Path:
    lines = [
        f"wrk.method = {_lua_string(method)}",
        f'wrk.headers["Authorization"] = {_lua_string("Bearer " + token)}',
    ]
    if body is not None:
        lines += [
            f"wrk.body = {_lua_string(body)}",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the server -----------------------------------------------------------------------


# --- one backend ----------------------------------------------------------------------


def bench_backend(
    wrk: str, label: str, database_url: str, warmup: int, seconds: int
) -> list[tuple[Route, WrkResult]]:
    waypost = waypost_executable()
    data_dir = Path(tempfile.mkdtemp(prefix="waypost-bench-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env["WAYPOST_DATA_DIR"] = str(data_dir)
        env["WAYPOST_DATABASE_URL"] = database_url  # empty: the embedded SQLite file
        # wrk comes from one address: keep the limiter in the path, but out of reach.
        # (The counts are a 32-bit column on PostgreSQL, and a lease takes a sixteenth.)
        env["WAYPOST_RATE_LIMIT_REQUESTS"] = str(10**9)
        if database_url:
            env["WAYPOST_SECRET_KEY"] = new_secret_key()
        token, dev = create_org(waypost, env)
        with running_server(waypost, env, data_dir / "server.log") as server:
            base_url = server.url
            status, created = http_json(
                "POST",
                f"{base_url}/platform/v1/environments/{dev}/destinations",
                token,
                json.loads(CREATE_BODY),
            )
            if status != 201:
                raise BenchError(f"creating the destination to read failed ({status}): {created}")
            destination = created["payload"]["destination"]["id"]
            routes = [
                Route("GET /health", "/health", None, None),
                Route(
                    "GET /platform/v1/destinations/{id}",
                    f"/platform/v1/destinations/{destination}",
                    write_script(data_dir / "read.lua", token),
                    0.35 if database_url else 0.5,
                ),
                Route(
                    "POST /platform/v1/environments/{envId}/destinations",
                    f"/platform/v1/environments/{dev}/destinations",
                    write_script(data_dir / "create.lua", token, method="POST", body=CREATE_BODY),
                    0.25,
                ),
            ]
            results = []
            for route in routes:
                print(f"  {label}: {route.label} ...", flush=True)
                run_wrk(wrk, base_url + route.path, route.script, warmup)
                results.append((route, run_wrk(wrk, base_url + route.path, route.script, seconds)))
            return results
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def print_table(title: str, results: list[tuple[Route, WrkResult]]) -> None:
    health = results[0][1].requests_per_second
    print(f"\n{title}")
    header = (
        f"{'route':<52} {'req/s':>9} {'p99':>10} {'x health':>9} {'target':>8} "
        f"{'':<6} {'non-2xx':>8} {'sock err':>8}"
    )
    print(header)
    print("-" * len(header))
    for route, result in results:
        ratio = result.requests_per_second / health if health else 0.0
        if route.target is None:
            target, verdict = "-", ""
        else:
            target = f">={route.target:.2f}"
            verdict = "PASS" if ratio >= route.target else "BELOW"
        print(
            f"{route.label:<52} {result.requests_per_second:>9.1f} {result.p99_ms:>8.2f}ms "
            f"{ratio:>9.2f} {target:>8} {verdict:<6} {result.non_2xx:>8} {result.socket_errors:>8}"
        )
    if any(r.non_2xx or r.socket_errors for _, r in results):
        print("note: errors above mean the matching figures do not measure successful requests")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure on this PostgreSQL server (a scratch database is created and dropped)",
    )
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per route")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per route")
    args = parser.parse_args(argv)

    try:
        wrk = ensure_wrk()
        setup = f"1 process, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}"
        timing = f"{args.warmup} s warm-up + {args.seconds} s measured per route"
        print(f"Waypost API throughput: {setup}, {timing}", flush=True)
        tables = [("SQLite", bench_backend(wrk, "SQLite", "", args.warmup, args.seconds))]
        if args.postgres:
            with scratch_postgres_database(args.postgres) as url:
                results = bench_backend(wrk, "PostgreSQL", url, args.warmup, args.seconds)
            tables.append(("PostgreSQL", results))
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    for name, results in tables:
        print_table(f"{name} ({setup})", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
