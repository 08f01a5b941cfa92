"""Cloud delivery throughput into Azure Blob Storage (Azurite). Prints figures; not a test.

Starts Azurite (tests/azurite.py) and one `waypost serve` process (API and delivery
worker) on SQLite whose storage accounts are Azurite's (WAYPOST_AZURE_BLOB_ENDPOINT), with
an AzureSharedKey credential, and measures:

1. the ceiling: azure-storage-blob's async client (azure.storage.blob.aio) uploading the
   same ~2 KB bodies straight to Azurite, one blob each, 16 in flight; measured before and
   after the runs through Waypost, which are compared with the mean of the two;
2. single file: N messages through the send API to a cloud destination
   (`unordered`, concurrency 16), one blob per message, from the first send until every
   blob exists;
3. batching: the same to a destination with `"batch": {"maxMessages": 100,
   "maxSeconds": 1}`, until the .ndjson files hold every message (their names end in
   `-{count}.ndjson`); messages/s and files/s.

Each run's container is deleted after it: Azurite's in-memory store slows down as it fills
(an upload into an account holding 10,000 blobs costs Azurite several times the CPU of one
into an empty account), so every run starts on an empty account.

Throughput is messages per second from the first send until the last blob is listed
(the container is listed when the blobs should be there, so the end is late by at most
one listing), with its ratio to the ceiling measured in the same run. CPU per message is
each process's user plus system time over the run: Waypost's (the whole server: send API,
queue and uploads), Azurite's, and this client's (the ceiling's uploads, or the sends).
Target: single file at least 0.5 x the ceiling. On a shared machine the rates move with
the neighbours' load; the CPU per message does not, so the report also gives the ratio the
machine's CPU alone would allow: the ceiling's CPU per message (client and Azurite) over
single file's (Waypost and Azurite).

Usage: python bench/blob.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from common import BenchError, cpu_seconds, create_org, running_server, waypost_executable
from delivery import SENDERS, WORKER_CONCURRENCY, Api, body_for

# tests/azurite.py starts Azurite the way the tests do; the repository root makes
# `tests` importable when this file runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, running_azurite

CONCURRENCY = 16  # a cloud destination's default; the ceiling uses the same
BATCH = {"maxMessages": 100, "maxSeconds": 1}
TARGET = 0.5  # single file, x the ceiling


@dataclass(frozen=True)
class Phase:
    messages: int
    files: int
    seconds: float
    waypost_cpu_ms: float | None  # per message; None where Waypost took no part
    azurite_cpu_ms: float
    client_cpu_ms: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def files_rate(self) -> float:
        return self.files / self.seconds


class Cpu:
    """CPU seconds of Waypost, Azurite and this process, read before and after a phase."""

    def __init__(self, waypost_pid: int | None, azurite_pid: int) -> None:
        self.waypost_pid, self.azurite_pid = waypost_pid, azurite_pid
        self.started = self._read()

    def _read(self) -> tuple[float, float, float]:
        waypost = cpu_seconds(self.waypost_pid) if self.waypost_pid else 0.0
        return waypost, cpu_seconds(self.azurite_pid), time.process_time()

    def phase(self, messages: int, files: int, seconds: float) -> Phase:
        now = self._read()
        waypost, azurite, client = (
            (after - before) * 1000 / messages
            for after, before in zip(now, self.started, strict=True)
        )
        return Phase(
            messages, files, seconds, waypost if self.waypost_pid else None, azurite, client
        )


def azurite_pid(port: int) -> int:
    """The pid of the Azurite this process started on `port` (a child of this process)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] != me:
                continue
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue  # gone meanwhile
        if b"--blobPort" in cmdline and str(port).encode() in cmdline:
            return int(stat.parent.name)
    raise BenchError(f"cannot find the Azurite process listening on port {port}")


def make_containers(azurite: Azurite, names: list[str]) -> None:
    from azure.storage.blob import BlobServiceClient as SyncService

    service = SyncService.from_connection_string(azurite.connection_string())
    for name in names:
        service.create_container(name)


async def ceiling(azurite: Azurite, container_name: str, count: int, azurite_pid: int) -> Phase:
    """The same bodies uploaded straight to Azurite, CONCURRENCY in flight, each a
    conditional create with the metadata Waypost writes."""
    bodies = [orjson.dumps(body_for(n)) for n in range(count)]
    day = time.strftime("%Y/%m/%d", time.gmtime())
    credential = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
    async with BlobServiceClient(azurite.account_url, credential=credential) as service:
        container = service.get_container_client(container_name)
        await container.create_container()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(count):
            queue.put_nowait(n)

        async def upload() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                log_id = str(uuid.uuid4())
                await container.upload_blob(
                    f"PatientAdmin/{day}/{log_id}.json",
                    bodies[n],
                    overwrite=False,
                    metadata={"logid": log_id, "datamodel": "PatientAdmin"},
                    content_settings=ContentSettings(content_type="application/json"),
                )

        cpu = Cpu(None, azurite_pid)
        started = time.perf_counter()
        await asyncio.gather(*(upload() for _ in range(CONCURRENCY)))
        phase = cpu.phase(count, count, time.perf_counter() - started)
        await container.delete_container()
        return phase


def single_files(names: list[str]) -> tuple[int, int]:
    """(messages, files) in a single-file container: one .json blob per message."""
    found = sum(1 for name in names if name.endswith(".json"))
    return found, found


def batch_files(names: list[str]) -> tuple[int, int]:
    """(messages, files) in a batching container: `{first logId}-{count}.ndjson`, and
    single .json files should a server without batching have written those instead."""
    batches = [name for name in names if name.endswith(".ndjson")]
    singles, _ = single_files(names)
    in_batches = sum(int(name.rsplit("-", 1)[1].removesuffix(".ndjson")) for name in batches)
    return in_batches + singles, len(batches) + singles


def batching_note(names: list[str]) -> str:
    batches = [name for name in names if name.endswith(".ndjson")]
    singles, _ = single_files(names)
    if not batches:
        return f"the server wrote {singles} single .json files: batching is not in effect"
    sizes = [int(name.rsplit("-", 1)[1].removesuffix(".ndjson")) for name in batches]
    return (
        f"{len(batches)} .ndjson files of {min(sizes)} to {max(sizes)} messages "
        f"(mean {sum(sizes) / len(sizes):.0f})"
        + (f", and {singles} single files" if singles else "")
    )


async def listed(container: ContainerClient) -> list[str]:
    return [blob.name async for blob in container.list_blobs()]


async def through_waypost(
    api: CloudApi,
    source_token: str,
    destination: str,
    container: ContainerClient,
    count: int,
    cpu: Cpu,
    delivered: Callable[[list[str]], tuple[int, int]],
) -> tuple[Phase, list[str]]:
    """Sends `count` messages to the destination (SENDERS at a time) and lists the
    container until `delivered` counts them all; returns the figures and the blob names.
    A session of its own for the sends."""
    headers = {"Authorization": f"Bearer {source_token}", "Content-Type": "application/json"}
    bodies = [orjson.dumps(body_for(n, destination)) for n in range(count)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def sender() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                async with session.post(
                    api.base + "/endpoint", data=bodies[n], headers=headers
                ) as answer:
                    if answer.status != 200:
                        text = await answer.text()
                        raise BenchError(f"the send API answered {answer.status}: {text}")

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
    sent = time.perf_counter() - started
    print(f"    sent {count} in {sent:.1f} s ({count / sent:.0f} msg/s accepted)", flush=True)
    # List when the blobs should be there by the rate so far: a few listings, not a
    # listing every moment competing with the uploads.
    last_progress, last_count = time.perf_counter(), -1
    while True:
        names = await listed(container)
        messages, files = delivered(names)
        now = time.perf_counter()
        if messages >= count:
            return cpu.phase(count, files, now - started), names
        if messages != last_count:
            last_progress, last_count = now, messages
        elif now - last_progress > 60:
            raise BenchError(
                f"{messages} of {count} messages in storage, none more for 60 s: "
                + await failure_reason(api, destination)
            )
        rate = max(messages, 1) / (now - started)
        await asyncio.sleep(min(max(0.2, (count - messages) / rate / 2), 5.0))


async def failure_reason(api: CloudApi, destination: str) -> str:
    """The latest attempt's error of a pending or failed log of the destination."""
    for status in ("failed", "pending"):
        found = await api.call(
            "POST",
            f"/platform/v1/environments/{api.env}/logs/search/metadata?_count=1",
            {"destinationId": destination, "status": status},
        )
        for log in found["payload"]["logs"]:
            latest = log["attempts"]["latest"] or {}
            return f"a {status} log says {latest.get('error') or log.get('failureReason')!r}"
    return "no pending or failed log"


class CloudApi(Api):
    """delivery.py's API client, with an environment and cloud destinations."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str, env: str) -> None:
        super().__init__(session, base, token)
        self.env = env

    async def shared_key(self) -> str:
        created = await self.call(
            "POST",
            "/platform/v1/authcredentials",
            {
                "environmentId": self.env,
                "name": "Azurite",
                "authStrategy": "AzureSharedKey",
                "accountKey": ACCOUNT_KEY,
            },
        )
        credential: str = created["payload"]["authCredential"]["id"]
        return credential

    async def cloud_destination(
        self, name: str, container: str, credential: str, delivery: dict[str, Any]
    ) -> str:
        created = await self.call(
            "POST",
            f"/platform/v1/environments/{self.env}/destinations",
            {
                "name": name,
                "cloudProviderSettings": {
                    "typeId": "azure",
                    "productId": "databricks",
                    "settings": {"storageAccountName": ACCOUNT, "containerName": container},
                },
                "authCredential": credential,
                "delivery": delivery,
            },
        )
        destination: str = created["payload"]["destination"]["id"]
        return destination

    async def verify(self, destination: str) -> str:
        try:
            answer = await self.call("POST", f"/platform/v1/destinations/{destination}/verify")
        except BenchError as exc:
            return str(exc)
        verification = answer["payload"]["destination"].get("verification") or {}
        return str(verification.get("status") or verification)


async def measure(
    azurite: Azurite, waypost_pid: int, base: str, token: str, env: str, count: int
) -> dict[str, Phase | str]:
    a_pid = azurite_pid(azurite.port)
    make_containers(azurite, ["bench-single", "bench-batch"])
    results: dict[str, Phase | str] = {}
    async with aiohttp.ClientSession() as session:
        api = CloudApi(session, base, token, env)
        credential = await api.shared_key()
        unordered = {"mode": "unordered", "concurrency": CONCURRENCY}
        single = await api.cloud_destination("Bench single", "bench-single", credential, unordered)
        results["verify"] = await api.verify(single)
        # Batching: `delivery.batch` on a cloud destination. Until it is on main, creating
        # such a destination answers 422 and the batching run is reported as not available.
        batch: str | None = None
        try:
            batch = await api.cloud_destination(
                "Bench batch", "bench-batch", credential, {**unordered, "batch": BATCH}
            )
        except BenchError as exc:
            results["batch"] = f"not available: {exc}"
        source_token = await api.source(env, [single] + ([batch] if batch else []))

        print("    ceiling ...", flush=True)
        results["ceiling"] = await ceiling(azurite, "bench-ceiling-1", count, a_pid)
        credential_pair = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
        async with BlobServiceClient(azurite.account_url, credential=credential_pair) as service:
            print("    single file ...", flush=True)
            results["single"], _ = await through_waypost(
                api,
                source_token,
                single,
                service.get_container_client("bench-single"),
                count,
                Cpu(waypost_pid, a_pid),
                single_files,
            )
            await service.delete_container("bench-single")
            if batch:
                print("    batching ...", flush=True)
                results["batch"], names = await through_waypost(
                    api,
                    source_token,
                    batch,
                    service.get_container_client("bench-batch"),
                    count,
                    Cpu(waypost_pid, a_pid),
                    batch_files,
                )
                results["batch files"] = batching_note(names)
                await service.delete_container("bench-batch")
        print("    ceiling again ...", flush=True)
        results["ceiling after"] = await ceiling(azurite, "bench-ceiling-2", count, a_pid)
    return results


def report(count: int, results: dict[str, Phase | str]) -> None:
    before, after = results["ceiling"], results["ceiling after"]
    assert isinstance(before, Phase) and isinstance(after, Phase)
    ceiling_rate = (before.rate + after.rate) / 2
    print(f"\nCloud delivery to Azurite, SQLite, 1 process: {count} messages of ~2 KB")
    print(f"verify probe on the single-file destination: {results['verify']}")
    print(
        f"{'run':<38} {'msg/s':>7} {'files/s':>8} {'x ceiling':>10} {'target':>7} "
        f"{'Waypost CPU/msg':>16} {'Azurite CPU/msg':>16} {'client CPU/msg':>15}"
    )
    print("-" * 124)
    rows = (
        (f"ceiling: azure.storage.blob.aio, {CONCURRENCY}", "ceiling", None),
        ("ceiling, measured again after", "ceiling after", None),
        (f"single file, unordered {CONCURRENCY}", "single", TARGET),
        (
            f"batch {BATCH['maxMessages']} msgs / {BATCH['maxSeconds']} s, unordered {CONCURRENCY}",
            "batch",
            None,
        ),
    )
    for label, key, target in rows:
        phase = results[key]
        if not isinstance(phase, Phase):
            print(f"{label:<38} {phase}")
            continue
        ratio = phase.rate / ceiling_rate
        verdict = ("PASS" if ratio >= target else "BELOW") if target else ""
        waypost = f"{phase.waypost_cpu_ms:.2f}ms" if phase.waypost_cpu_ms is not None else "-"
        print(
            f"{label:<38} {phase.rate:>7.0f} {phase.files_rate:>8.1f} {ratio:>10.2f} "
            f"{'>=' + str(target) if target else '':>7} {waypost:>16} "
            f"{phase.azurite_cpu_ms:>14.2f}ms {phase.client_cpu_ms:>13.2f}ms {verdict}"
        )
    if "batch files" in results:
        print(f"batching wrote {results['batch files']}")
    single = results["single"]
    assert isinstance(single, Phase) and single.waypost_cpu_ms is not None
    ceiling_cpu = sum(p.client_cpu_ms + p.azurite_cpu_ms for p in (before, after)) / 2
    single_cpu = single.waypost_cpu_ms + single.azurite_cpu_ms
    print(
        f"CPU per message: ceiling {ceiling_cpu:.2f} ms (client + Azurite), single file "
        f"{single_cpu:.2f} ms (Waypost + Azurite): {ceiling_cpu / single_cpu:.2f} x the "
        f"ceiling if CPU were the only limit (target >={TARGET})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5_000, help="messages per run")
    args = parser.parse_args(argv)
    waypost = waypost_executable()
    data_dir = Path(tempfile.mkdtemp(prefix="waypost-bench-blob-"))
    try:
        with running_azurite(data_dir) as azurite:
            env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
            env.update(
                WAYPOST_DATA_DIR=str(data_dir),
                WAYPOST_DATABASE_URL="",
                WAYPOST_RATE_LIMIT_REQUESTS="0",
                WAYPOST_OUTBOUND_ALLOW="127.0.0.0/8",  # Azurite listens on loopback
                WAYPOST_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
                WAYPOST_AZURE_BLOB_ENDPOINT=azurite.endpoint_template,
            )
            token, dev = create_org(waypost, env)
            print(f"  Azurite on port {azurite.port}; SQLite, 1 process ...", flush=True)
            try:
                with running_server(waypost, env, data_dir / "server.log") as server:
                    results = asyncio.run(
                        measure(azurite, server.pid, server.url, token, dev, args.messages)
                    )
            except BenchError:
                for log in sorted(data_dir.glob("*.log")) + sorted(data_dir.glob("*.out")):
                    print(f"--- the end of {log.name}:\n{log.read_text()[-3000:]}", flush=True)
                raise
        report(args.messages, results)
    except (BenchError, RuntimeError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
