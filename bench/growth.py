"""Flat latency as tables grow: the hot reads at 1,000 logs and at 1,000,000. Prints
figures; not a test.

For each backend (SQLite always, PostgreSQL with --postgres URL), on a fresh database:

1. seed a small installation straight into the tables (bulk inserts, as the stores would
   write them): 2,000 destinations over 20 environments, 1,000 logs with their messages
   and attempts;
2. measure, in this process, through the same service functions the routes call: get a
   destination; list an environment's destinations, the first page and a deep page by
   cursor (50 each); search the environment's logs by destination and status (the probe
   destination's newest failed logs, 50); get a log (with its attempts and message);
3. grow it to 100,000 destinations and 1,000,000 logs (the probe destination gets
   thousands of newer succeeded logs over its failed ones; the rest go everywhere),
   ANALYZE, and measure the same calls again.

Two installations are seeded alike and one is grown, so both are measured in the same
run, alternating one call on each: whatever else the machine does weighs on both. Each
call is timed alone (median and p95 of --repeat calls, after a warm-up); the ratio is the
median at 1M over the median at 1k. Target: each within 1.5x.

Usage: python bench/growth.py [--postgres URL] [--logs N] [--destinations N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from common import BenchError, new_secret_key, scratch_postgres_database
from waypost import clock
from waypost.access import Caller, Principal
from waypost.auth import service as auth_service
from waypost.db import Database, driver_url, migrate, new_id
from waypost.destinations import service as destinations
from waypost.destinations.tables import destinations as destinations_table
from waypost.http import encode_cursor
from waypost.logs import service as logs
from waypost.logs.schemas import LogSearch
from waypost.logs.tables import attempts, messages
from waypost.logs.tables import logs as logs_table
from waypost.organizations.tables import environments as environments_table
from waypost.runtime import Runtime, open_runtime
from waypost.settings import Settings

ENVIRONMENTS = 20
PAGE = 50
SMALL_DESTINATIONS = 2_000  # 100 per environment: a first page and a deep one
SMALL_LOGS = 1_000
PROBE_FAILED = 100  # the probe destination's failed logs, all seeded small
BODY = '{"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival"}, "Patient": {}}'
BATCH = 20_000
TARGET = 1.5


@dataclass
class Installation:
    url: str
    organization_id: int
    user_id: str
    environments: list[str]  # the first is measured
    destinations: list[list[str]]  # ids by environment, in creation order
    probe_destination: str = ""
    probe_log: str = ""
    token: str = ""  # the owner's: GET destination looks it up in its own statement


# --- seeding -------------------------------------------------------------------------------


def _insert(engine: sa.Engine, table: sa.Table, rows: Iterator[dict[str, Any]]) -> int:
    """Inserts in batches: COPY on PostgreSQL, executemany on SQLite."""
    count = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        columns = list(batch[0])
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                names = ", ".join(f'"{c}"' for c in columns)
                with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row([row[c] for c in columns])
            else:
                conn.execute(table.insert(), batch)
        batch.clear()

    for row in rows:
        batch.append(row)
        count += 1
        if len(batch) >= BATCH:
            flush()
    flush()
    return count


def _destinations(inst: Installation, per_environment: int, now: str) -> Iterator[dict[str, Any]]:
    for env_index, env in enumerate(inst.environments):
        known = inst.destinations[env_index]
        for n in range(len(known), per_environment):
            destination_id = new_id()
            known.append(destination_id)
            yield {
                "id": destination_id,
                "environment_id": env,
                "name": f"Destination {env_index}-{n}",
                "endpoint": f"https://receiver.example.org/{env_index}/{n}",
                "verified": True,
                "created_at": now,
                "updated_at": now,
            }


def _logs(
    inst: Installation, count: int, probe_share: float, failed_probe: int, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` logs (their messages and attempts): a `probe_share` of them to the probe
    destination, every other one failed until `failed_probe` have; the rest over every
    destination, one in a hundred failed."""
    now = clock.now()
    message_rows, log_rows, attempt_rows = [], [], []
    failed_left = failed_probe
    every = round(1 / probe_share)
    for n in range(count):
        if n % every == 0:
            env_index, destination = 0, inst.probe_destination
            status = "failed" if failed_left and (n // every) % 2 == 0 else "succeeded"
            failed_left -= status == "failed"
        else:
            env_index = rng.randrange(len(inst.environments))
            destination = rng.choice(inst.destinations[env_index])
            status = "failed" if rng.random() < 0.01 else "succeeded"
        message_id, log_id, attempt_id, source_id = new_id(), new_id(), new_id(), new_id()
        env = inst.environments[env_index]
        message_rows.append(
            {
                "id": message_id,
                "environment_id": env,
                "source_id": source_id,
                "body": BODY,
                "created_at": now,
            }
        )
        log_rows.append(
            {
                "id": log_id,
                "message_id": message_id,
                "environment_id": env,
                "organization_id": inst.organization_id,
                "type": "send",
                "status": status,
                "data_model": "PatientAdmin",
                "event_type": "Arrival",
                "test": True,
                "source_id": source_id,
                "source_name": "Feed",
                "destination_id": destination,
                "destination_name": "Destination",
                "attempts_total": 1,
                "latest_attempt_id": attempt_id,
                "created_at": now,
                "updated_at": now,
            }
        )
        attempt_rows.append(
            {
                "id": attempt_id,
                "log_id": log_id,
                "attempt_at": now,
                "status": status,
                "http_status": 200 if status == "succeeded" else 500,
                "duration_ms": 3,
            }
        )
    if failed_left:
        raise BenchError("the probe destination got fewer failed logs than planned")
    return message_rows, log_rows, attempt_rows


def grow(inst: Installation, destinations_per_env: int, log_count: int, small: bool) -> float:
    """Seeds up to the given sizes; answers the seconds it took."""
    started = time.perf_counter()
    engine = sa.create_engine(driver_url(inst.url))
    rng = random.Random(len(inst.destinations[0]))
    try:
        _insert(engine, destinations_table, _destinations(inst, destinations_per_env, clock.now()))
        if small:
            inst.probe_destination = inst.destinations[0][0]
        # The probe's failed logs come with the small installation; at 1M they lie under
        # about ten thousand newer succeeded ones.
        share = 0.2 if small else 0.01
        failed = PROBE_FAILED if small else 0
        for start in range(0, log_count, BATCH * 5):
            chunk = min(BATCH * 5, log_count - start)
            message_rows, log_rows, attempt_rows = _logs(
                inst, chunk, share, failed if start == 0 else 0, rng
            )
            _insert(engine, messages, iter(message_rows))
            _insert(engine, logs_table, iter(log_rows))
            _insert(engine, attempts, iter(attempt_rows))
            if small and start == 0:
                inst.probe_log = next(
                    r["id"]
                    for r in log_rows
                    if r["destination_id"] == inst.probe_destination and r["status"] == "failed"
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - started


async def enroll(url: str) -> Installation:
    db = Database(url, pool_size=1)
    try:
        enrolled = await auth_service.enroll_organization(db, name="Growth", owner_email="g@x.test")
        created = enrolled.organization
        dev = next(e.id for e in created.environments if e.flag.value == "Development")
        others = [e.id for e in created.environments if e.id != dev]
        extra = [
            {
                "id": new_id(),
                "organization_id": created.id,
                "name": f"Environment {n}",
                "flag": "Development",
                "created_at": clock.now(),
            }
            for n in range(ENVIRONMENTS - len(created.environments))
        ]
        async with db.write() as conn:
            await conn.execute(environments_table.insert(), extra)
    finally:
        await db.close()
    envs: list[str] = [dev, *others, *(str(e["id"]) for e in extra)]
    return Installation(
        url, created.id, created.owner.id, envs, [[] for _ in envs], token=enrolled.token.token
    )


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p95_ms: float

    @classmethod
    def of(cls, took: list[float]) -> Timing:
        took = sorted(took)
        return cls(statistics.median(took), took[int(0.95 * (len(took) - 1))])


Call = Callable[[], Awaitable[object]]


async def calls(rt: Runtime, inst: Installation) -> dict[str, Call]:
    """The measured calls on one installation, as the routes make them."""
    principal = Principal(
        user_id=inst.user_id, organization_id=inst.organization_id, org_role="owner"
    )
    env = inst.environments[0]
    deep_cursor = encode_cursor(await _seq_of(rt, inst.destinations[0][-PAGE - 10]))
    failed_here = LogSearch.model_validate(
        {"destinationId": inst.probe_destination, "status": "failed"}
    )

    async def get_destination() -> object:
        caller = Caller(inst.token, None, None)
        return await destinations.get(rt, caller=caller, destination_id=inst.probe_destination)

    async def first_page() -> object:
        found, _ = await destinations.list_page(
            rt, principal=principal, environment_id=env, count=PAGE, cursor=None
        )
        assert len(found) == PAGE
        return found

    async def deep_page() -> object:
        found, _ = await destinations.list_page(
            rt, principal=principal, environment_id=env, count=PAGE, cursor=deep_cursor
        )
        assert len(found) == PAGE
        return found

    async def search() -> object:
        found, _ = await logs.search(rt, principal, env, failed_here, count=PAGE, cursor=None)
        assert len(found) == PAGE and all(log.status == "failed" for log in found)
        return found

    async def get_log() -> object:
        return await logs.get(rt, principal, str(inst.organization_id), inst.probe_log)

    return {
        "get destination": get_destination,
        "list destinations, first page": first_page,
        "list destinations, deep page": deep_page,
        "search logs by destination, status": search,
        "get log": get_log,
    }


async def measure(
    small: Installation, big: Installation, settings: Settings, repeat: int
) -> tuple[dict[str, Timing], dict[str, Timing]]:
    """Times each call on both installations, alternating one call on each, so that
    whatever else the machine does weighs on both alike."""
    async with (
        open_runtime(settings.model_copy(update={"database_url": small.url}), pool_size=2) as a,
        open_runtime(settings.model_copy(update={"database_url": big.url}), pool_size=2) as b,
    ):
        on_small, on_big = await calls(a, small), await calls(b, big)
        took_small: dict[str, list[float]] = {name: [] for name in on_small}
        took_big: dict[str, list[float]] = {name: [] for name in on_small}
        warm_up = max(10, repeat // 10)
        for n in range(warm_up + repeat):
            pairs = [(on_small, took_small), (on_big, took_big)]
            for name in on_small:
                # Each goes first every other round: neither gets the warmer caches.
                for calls_of, took in pairs if n % 2 else pairs[::-1]:
                    call = calls_of[name]
                    started = time.perf_counter()
                    await call()
                    if n >= warm_up:
                        took[name].append((time.perf_counter() - started) * 1000)
    return (
        {name: Timing.of(t) for name, t in took_small.items()},
        {name: Timing.of(t) for name, t in took_big.items()},
    )


async def _seq_of(rt: Runtime, destination_id: str) -> int:
    async with rt.db.read() as conn:
        seq = await conn.scalar(
            sa.select(destinations_table.c.seq).where(destinations_table.c.id == destination_id)
        )
    return int(seq)


def bench_backend(
    label: str,
    urls: tuple[str, str],
    data_dir: Path,
    destinations_total: int,
    logs_total: int,
    repeat: int,
) -> None:
    """`urls`: two empty databases, one kept small and one grown."""
    settings = Settings(
        data_dir=data_dir,
        secret_key=new_secret_key(),
        delivery_worker=False,
        rate_limit_requests=0,
    )
    installations = []
    for url in urls:
        migrate(url)
        inst = asyncio.run(enroll(url))
        grow(inst, SMALL_DESTINATIONS // ENVIRONMENTS, SMALL_LOGS, small=True)
        installations.append(inst)
    small, big = installations
    print(
        f"  {label}: seeded two installations of {SMALL_DESTINATIONS:,} destinations and "
        f"{SMALL_LOGS:,} logs; growing one ...",
        flush=True,
    )
    seeded = grow(big, destinations_total // ENVIRONMENTS, logs_total - SMALL_LOGS, small=False)
    print(
        f"  {label}: grew it to {destinations_total:,} destinations and {logs_total:,} logs "
        f"in {seeded:.0f} s; measuring both ...",
        flush=True,
    )
    at_small, at_big = asyncio.run(measure(small, big, settings, repeat))
    report(label, at_small, at_big, logs_total)


def report(label: str, small: dict[str, Timing], big: dict[str, Timing], logs_total: int) -> None:
    big_label = f"{logs_total / 1_000_000:g}M" if logs_total >= 1_000_000 else f"{logs_total:,}"
    print(f"\n{label}: median (p95) per call, one at a time")
    print(f"{'call':<38} {'1k logs':>18} {big_label + ' logs':>18} {'ratio':>7}  target")
    print("-" * 92)
    for name, at_small in small.items():
        at_big = big[name]
        ratio = at_big.median_ms / at_small.median_ms
        verdict = "PASS" if ratio <= TARGET else "ABOVE"
        print(
            f"{name:<38} {at_small.median_ms:>7.3f} ({at_small.p95_ms:>6.3f}) ms "
            f"{at_big.median_ms:>7.3f} ({at_big.p95_ms:>6.3f}) ms {ratio:>6.2f}x  "
            f"<={TARGET}x {verdict}"
        )
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--postgres", metavar="URL", help="also measure on this PostgreSQL server")
    parser.add_argument("--logs", type=int, default=1_000_000, help="logs at the end")
    parser.add_argument("--destinations", type=int, default=100_000, help="destinations at the end")
    parser.add_argument("--repeat", type=int, default=500, help="timed calls per figure")
    parser.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args(argv)
    if args.logs <= SMALL_LOGS or args.destinations <= SMALL_DESTINATIONS:
        parser.error(f"--logs must exceed {SMALL_LOGS} and --destinations {SMALL_DESTINATIONS}")
    try:
        if not args.skip_sqlite:
            data_dir = Path(tempfile.mkdtemp(prefix="waypost-growth-"))
            try:
                urls = (f"sqlite:///{data_dir / 'small.db'}", f"sqlite:///{data_dir / 'big.db'}")
                bench_backend("SQLite", urls, data_dir, args.destinations, args.logs, args.repeat)
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
        if args.postgres:
            data_dir = Path(tempfile.mkdtemp(prefix="waypost-growth-"))
            try:
                with (
                    scratch_postgres_database(args.postgres) as small_url,
                    scratch_postgres_database(args.postgres) as big_url,
                ):
                    bench_backend(
                        "PostgreSQL",
                        (small_url, big_url),
                        data_dir,
                        args.destinations,
                        args.logs,
                        args.repeat,
                    )
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
