"""Delivery throughput and latency, end to end. Prints figures; not a test.

For each backend (SQLite always, PostgreSQL with --postgres URL) this starts one
`waypost serve` process (API and delivery worker), 20 loopback receivers (aiohttp), and:

1. the ceiling: an aiohttp client posts the same ~2 KB bodies straight to the same
   receivers, at the concurrency the worker delivers with;
2. unordered: 20,000 messages through the send API to 20 `unordered` destinations;
3. fifo: 20,000 messages to 20 `fifo` destinations (one in flight each);
4. steady: 500 msg/s for 10 s to the unordered destinations, for accept-to-receipt latency.

Throughput is messages received per second, from the first send to the last receipt,
and its ratio to the ceiling measured in the same run. Latency is from the send API's 200
to the receiver's receipt. Targets on SQLite: unordered >= 0.5 x ceiling, fifo >= 0.25 x,
steady p99 < 250 ms. On PostgreSQL the same runs are repeated with a second worker process.

Machine noise moves rates, not CPU time: so it also prints each run's ratio by CPU, the
ceiling's CPU per message (client and receivers) over the run's (Waypost's processes,
plus the client and receivers).

Usage: python bench/delivery.py [--postgres URL] [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from common import (
    BenchError,
    cpu_seconds,
    create_org,
    new_secret_key,
    running_server,
    scratch_postgres_database,
    stop,
    waypost_executable,
)

RECEIVERS = 20
SENDERS = 32  # concurrent send-API clients
WORKER_CONCURRENCY = 100
TOKEN = "bench-verification-token"  # noqa: S105 - a test value, not a secret
PADDING = "x" * 1800  # brings a message to about 2 KB


@dataclass
class Receipts:
    """What the receivers got: receipt time by log id."""

    at: dict[str, float] = field(default_factory=dict)
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def got(self, log_id: str) -> None:
        if log_id not in self.at:
            self.at[log_id] = time.perf_counter()
            if len(self.at) >= self.expected:
                self.done.set()


async def start_receivers(receipts: Receipts) -> tuple[list[str], list[web.AppRunner]]:
    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if "challenge" in body:
            return web.json_response({"challenge": body["challenge"]})
        logs = body.get("Meta", {}).get("Logs")
        if logs:
            receipts.got(logs[0]["ID"])
        return web.json_response({"ok": True})

    urls, runners = [], []
    for _ in range(RECEIVERS):
        app = web.Application()
        app.router.add_post("/", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        urls.append(f"http://127.0.0.1:{port}/")
        runners.append(runner)
    return urls, runners


def body_for(n: int, destination: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"DataModel": "PatientAdmin", "EventType": "Arrival", "Test": True}
    if destination:
        meta["Destinations"] = [{"ID": destination}]
    return {
        "Meta": meta,
        "Patient": {"Identifiers": [{"ID": f"MRN-{n}", "IDType": "MR"}]},
        "Note": PADDING,
        "n": n,
    }


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session, self.base, self.token = session, base, token

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as answer:
            found = await answer.json(content_type=None)
            if answer.status >= 300:
                raise BenchError(f"{method} {path} answered {answer.status}: {found}")
            return found

    async def destinations(self, env: str, urls: list[str], mode: str) -> list[str]:
        made = []
        for i, url in enumerate(urls):
            created = await self.call(
                "POST",
                f"/platform/v1/environments/{env}/destinations",
                {
                    "name": f"{mode} {i}",
                    "endpoint": url,
                    "verificationToken": TOKEN,
                    "delivery": {"mode": mode},
                },
            )
            destination = created["payload"]["destination"]["id"]
            await self.call("POST", f"/platform/v1/destinations/{destination}/verify")
            made.append(destination)
        return made

    async def source(self, env: str, destinations: list[str]) -> str:
        created = await self.call(
            "POST", f"/platform/v1/environments/{env}/sources", {"name": "bench"}
        )
        source = created["payload"]["source"]
        for destination in destinations:
            await self.call(
                "POST",
                f"/platform/v1/environments/{env}/subscriptions",
                {
                    "source": {"id": source["id"]},
                    "destination": {"id": destination},
                    "dataModel": "PatientAdmin",
                },
            )
        async with self.session.post(
            self.base + "/auth/authenticate",
            json={"apiKey": source["apiKey"], "secret": source["secret"]},
        ) as answer:
            token: str = (await answer.json())["accessToken"]
        return token


@dataclass(frozen=True)
class Ceiling:
    rate: float  # messages per second posted straight to the receivers
    cpu_ms: float  # this process's CPU per message: the client and the receivers


async def ceiling(
    session: aiohttp.ClientSession, urls: list[str], count: int, concurrency: int
) -> Ceiling:
    """Posts the bodies straight to the receivers."""
    bodies = [orjson.dumps(body_for(n)) for n in range(count)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def post() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            async with session.post(
                urls[n % len(urls)],
                data=bodies[n],
                headers={"Content-Type": "application/json", "verification-token": TOKEN},
            ) as answer:
                await answer.read()

    started, cpu_before = time.perf_counter(), time.process_time()
    await asyncio.gather(*(post() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Ceiling(count / elapsed, (time.process_time() - cpu_before) * 1000 / count)


@dataclass(frozen=True)
class Run:
    rate: float  # messages received per second
    p50_ms: float
    p99_ms: float
    cpu_ms: float = 0.0  # Waypost's CPU time per message (all its processes): noise-proof
    client_cpu_ms: float = 0.0  # this process's (sending and receiving) per message


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def through_waypost(
    pids: list[int],
    base: str,
    source_token: str,
    destinations: list[str],
    receipts: Receipts,
    count: int,
    per_second: float | None = None,
) -> Run:
    """Sends `count` messages (as fast as SENDERS allow, or at `per_second`) and waits
    for every one to arrive. A session of its own: connections left idle by an earlier
    run may have been closed by the server meanwhile."""
    cpu_before, client_before = _cpu(pids), time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        run = await _through_waypost(
            session, base, source_token, destinations, receipts, count, per_second
        )
    cpu_ms = (_cpu(pids) - cpu_before) * 1000 / count
    client_cpu_ms = (time.process_time() - client_before) * 1000 / count
    return Run(run.rate, run.p50_ms, run.p99_ms, cpu_ms, client_cpu_ms)


async def _through_waypost(
    session: aiohttp.ClientSession,
    base: str,
    source_token: str,
    destinations: list[str],
    receipts: Receipts,
    count: int,
    per_second: float | None,
) -> Run:
    receipts.at.clear()
    receipts.expected = count
    receipts.done.clear()
    accepted: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {source_token}", "Content-Type": "application/json"}
    bodies = [orjson.dumps(body_for(n, destinations[n % len(destinations)])) for n in range(count)]
    started = time.perf_counter()

    async def send(n: int) -> None:
        async with session.post(base + "/endpoint", data=bodies[n], headers=headers) as answer:
            if answer.status != 200:
                raise BenchError(f"the send API answered {answer.status}: {await answer.text()}")
            log_id = (await answer.json())["Meta"]["Logs"][0]["ID"]
        accepted[log_id] = time.perf_counter()

    if per_second is None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(count):
            queue.put_nowait(n)

        async def sender() -> None:
            while not queue.empty():
                await send(queue.get_nowait())

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
    else:
        tasks = []
        for n in range(count):
            delay = started + n / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(n)))
        await asyncio.gather(*tasks)
    await asyncio.wait_for(receipts.done.wait(), timeout=600)
    finished = max(receipts.at.values())
    latencies = [
        (receipts.at[log_id] - at) * 1000
        for log_id, at in accepted.items()
        if log_id in receipts.at
    ]
    return Run(
        count / (finished - started), _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    )


@contextmanager
def extra_worker(waypost: str, env: dict[str, str], log_path: Path) -> Iterator[int]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [waypost, "worker", "--concurrency", str(WORKER_CONCURRENCY)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process.pid
        finally:
            stop(process, log_path)


async def measure(
    pids: list[int], base: str, token: str, env_id: str, messages: int
) -> dict[str, Any]:
    receipts = Receipts()
    urls, runners = await start_receivers(receipts)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            api = Api(session, base, token)
            unordered = await api.destinations(env_id, urls, "unordered")
            fifo = await api.destinations(env_id, urls, "fifo")
            source_token = await api.source(env_id, unordered + fifo)
            ceiling_unordered = await ceiling(session, urls, messages, WORKER_CONCURRENCY)
            ceiling_fifo = await ceiling(session, urls, messages, RECEIVERS)
            run_unordered = await through_waypost(
                pids, base, source_token, unordered, receipts, messages
            )
            run_fifo = await through_waypost(pids, base, source_token, fifo, receipts, messages)
            steady = await through_waypost(
                pids, base, source_token, unordered, receipts, 5000, per_second=500
            )
    finally:
        for runner in runners:
            await runner.cleanup()
    return {
        "ceiling unordered": ceiling_unordered,
        "ceiling fifo": ceiling_fifo,
        "unordered": run_unordered,
        "fifo": run_fifo,
        "steady": steady,
    }


def bench_backend(label: str, database_url: str, messages: int, workers: int) -> dict[str, Any]:
    waypost = waypost_executable()
    data_dir = Path(tempfile.mkdtemp(prefix="waypost-bench-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env.update(
            WAYPOST_DATA_DIR=str(data_dir),
            WAYPOST_DATABASE_URL=database_url,
            WAYPOST_RATE_LIMIT_REQUESTS="0",
            WAYPOST_OUTBOUND_ALLOW="127.0.0.0/8",
            WAYPOST_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
            # Two pools of up to twice this each, per process: two processes stay within
            # PostgreSQL's default of 100 connections.
            WAYPOST_DB_POOL_SIZE="10",
        )
        if database_url:
            env["WAYPOST_SECRET_KEY"] = new_secret_key()
        token, dev = create_org(waypost, env)
        print(f"  {label}, {workers} worker(s) ...", flush=True)
        try:
            with running_server(waypost, env, data_dir / "server.log") as server:
                if workers == 2:
                    with extra_worker(waypost, env, data_dir / "worker.log") as worker_pid:
                        pids = [server.pid, worker_pid]
                        return asyncio.run(measure(pids, server.url, token, dev, messages))
                return asyncio.run(measure([server.pid], server.url, token, dev, messages))
        except BenchError:
            for log in sorted(data_dir.glob("*.log")):
                print(f"--- the end of {log.name}:\n{log.read_text()[-3000:]}", flush=True)
            raise
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def report(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(
        f"{'run':<34} {'msg/s':>9} {'x ceiling':>10} {'target':>8} {'p50':>10} {'p99':>10} "
        f"{'CPU/msg':>9}"
    )
    print("-" * 100)
    runs = (
        ("unordered, 20 destinations", figures["unordered"], figures["ceiling unordered"], 0.5),
        ("fifo, 20 destinations", figures["fifo"], figures["ceiling fifo"], 0.25),
    )
    for name, run, top, target in runs:
        ratio = run.rate / top.rate
        verdict = "PASS" if ratio >= target else "BELOW"
        print(
            f"{name:<34} {run.rate:>9.0f} {ratio:>10.2f} {'>=' + str(target):>8} "
            f"{run.p50_ms:>8.1f}ms {run.p99_ms:>8.1f}ms {run.cpu_ms:>7.2f}ms {verdict}"
        )
    steady = figures["steady"]
    verdict = "PASS" if steady.p99_ms < 250 else "ABOVE"
    print(
        f"{'steady 500 msg/s (p99 < 250 ms)':<34} {steady.rate:>9.0f} {'':>10} {'':>8} "
        f"{steady.p50_ms:>8.1f}ms {steady.p99_ms:>8.1f}ms {steady.cpu_ms:>7.2f}ms {verdict}"
    )
    print(
        f"ceilings: {figures['ceiling unordered'].rate:.0f} msg/s at {WORKER_CONCURRENCY} in "
        f"flight, {figures['ceiling fifo'].rate:.0f} msg/s at {RECEIVERS} in flight"
    )
    # What the CPU alone allows, whatever else the machine is doing: the ceiling's CPU per
    # message (client and receivers) over the run's (Waypost's, plus its client and
    # receivers'). Both share this machine's cores in the same way.
    for name, run, top, _ in runs:
        spent = run.cpu_ms + run.client_cpu_ms
        print(
            f"by CPU, {name}: {top.cpu_ms / spent:.2f} x (ceiling {top.cpu_ms:.2f} ms per "
            f"message; through Waypost {spent:.2f} ms: Waypost {run.cpu_ms:.2f}, client and "
            f"receivers {run.client_cpu_ms:.2f})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--postgres", metavar="URL", help="also measure on this PostgreSQL server")
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    args = parser.parse_args(argv)
    try:
        report("SQLite, 1 process", bench_backend("SQLite", "", args.messages, 1))
        if args.postgres:
            for workers in (1, 2):
                with scratch_postgres_database(args.postgres) as url:
                    figures = bench_backend("PostgreSQL", url, args.messages, workers)
                report(f"PostgreSQL, {workers} worker process(es)", figures)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
