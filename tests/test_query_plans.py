"""The hot queries on PostgreSQL walk an index, never a whole big table.

A fresh database is seeded with a few thousand destinations, tens of thousands of logs
and attempts and a few thousand outbox rows (one probe destination has many logs, of
which few failed), and analyzed. Then the stores' own functions run on a connection that
first runs each statement under `EXPLAIN (ANALYZE, FORMAT JSON)` in a savepoint (rolled
back, so it changes nothing) and keeps the plan. With sequential scans priced out
(`enable_seqscan`, `enable_bitmapscan` and `enable_sort` off, so the planner takes any
index that can serve, in order), each plan must:

- scan none of the big tables (logs, messages, attempts, destinations, outbox)
  sequentially: a sequential scan there means no index can serve the query;
- read not many more rows than it returns (rows removed by a filter stay under
  FILTER_SLACK + FILTER_FACTOR times what the scan kept): the index narrows to the rows
  wanted (walking the environment's newest logs for a destination with a tenth of them
  is fine; walking a destination's every log for its few failed ones is not);
- for a keyset page (destinations, log search), take its order from the index: no Sort.

This is what keeps them flat as the tables grow (`make bench-growth` measures it).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg2

from tests.support import scratch_postgres_database
from waypost import clock
from waypost.auth import service as auth_service
from waypost.db import Connection, Database, Prepared, Result, migrate, new_id
from waypost.destinations import store as destinations_store
from waypost.destinations.tables import destinations
from waypost.logs import store as logs_store
from waypost.logs.tables import attempts, logs, messages
from waypost.organizations.tables import environments as environments_table
from waypost.queue import store as queue_store
from waypost.queue.tables import outbox

BIG = {"logs", "messages", "attempts", "destinations", "outbox"}
FILTER_SLACK = 50
FILTER_FACTOR = 10
ENVIRONMENTS = 40  # the organization's three and more, so each holds a small share
PER_ENVIRONMENT = 100  # destinations in each
LOGS = 20_000
PROBE_LOGS = 500  # of them, to the probe destination; one in a hundred failed
OUTBOX = 3_000


@dataclass
class Seeded:
    url: str
    organization_id: int
    user_id: str
    environment_id: str
    probe_destination: str
    probe_log: str
    deep_seq: int  # a destination seq near the end of the environment
    lanes: list[str] = field(default_factory=list)


Rows = list[dict[str, Any]]


def _rows_for(environments: list[str]) -> tuple[Rows, Rows, Rows, Rows, Rows, list[str]]:
    now = clock.now()
    rng = random.Random(7)
    dest_rows: Rows = [
        {
            "id": new_id(),
            "environment_id": env,
            "name": f"Destination {n}",
            "endpoint": f"https://receiver.example.org/{n}",
            "verified": True,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(PER_ENVIRONMENT)
        for env in environments
    ]
    dev = [d for d in dest_rows if d["environment_id"] == environments[0]]
    probe, others = dev[0], dev[1:]
    message_rows: Rows = []
    log_rows: Rows = []
    attempt_rows: Rows = []
    for n in range(LOGS):
        target = probe if n % (LOGS // PROBE_LOGS) == 0 else others[n % len(others)]
        status = "failed" if rng.random() < 0.01 else "succeeded"
        message_id, log_id, attempt_id = new_id(), new_id(), new_id()
        message_rows.append(
            {
                "id": message_id,
                "environment_id": target["environment_id"],
                "source_id": new_id(),
                "body": '{"Meta": {}}',
                "created_at": now,
            }
        )
        log_rows.append(
            {
                "id": log_id,
                "message_id": message_id,
                "environment_id": target["environment_id"],
                "organization_id": 1,
                "type": "send",
                "status": status,
                "data_model": "PatientAdmin",
                "event_type": "Arrival",
                "test": True,
                "source_id": message_rows[-1]["source_id"],
                "source_name": "Feed",
                "destination_id": target["id"],
                "destination_name": target["name"],
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
                "status": "failed" if status == "failed" else "succeeded",
                "duration_ms": 3,
            }
        )
    outbox_rows: Rows = []
    lanes = [f"{others[n % len(others)]['id']}:{n}" for n in range(OUTBOX // 3)]
    for n in range(OUTBOX):
        lane = lanes[n % len(lanes)]
        head = n < len(lanes)
        outbox_rows.append(
            {
                "log_id": log_rows[n]["id"],
                "destination_id": lane.split(":")[0],
                "lane": lane,
                "is_head": head,
                "held": False,
                "due_at": clock.after(-60 if n % 2 else 3600),
                "lease_until": clock.after(30) if head and n % 5 == 0 else None,
                "lease_owner": new_id() if head and n % 5 == 0 else None,
                "attempts": 0,
                "next_attempt_id": new_id(),
                "enqueued_at": now,
            }
        )
    return dest_rows, message_rows, log_rows, attempt_rows, outbox_rows, lanes


@pytest.fixture(scope="module")
def seeded(postgres_server_url: str) -> Iterator[Seeded]:
    with scratch_postgres_database(postgres_server_url) as url:
        migrate(url)

        async def enroll() -> Any:
            db = Database(url, pool_size=1)
            try:
                return await auth_service.enroll_organization(
                    db, name="Plans", owner_email="o@x.test"
                )
            finally:
                await db.close()

        enrolled = asyncio.run(enroll())
        created = enrolled.organization
        environments = [e.id for e in created.environments]
        extra = [
            {
                "id": new_id(),
                "organization_id": created.id,
                "name": f"Environment {n}",
                "flag": "Development",
                "created_at": clock.now(),
            }
            for n in range(ENVIRONMENTS - len(environments))
        ]
        environments += [e["id"] for e in extra]
        dest_rows, message_rows, log_rows, attempt_rows, outbox_rows, lanes = _rows_for(
            environments
        )
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.begin() as conn:
                for table, rows in (
                    (environments_table, extra),
                    (destinations, dest_rows),
                    (messages, message_rows),
                    (logs, log_rows),
                    (attempts, attempt_rows),
                    (outbox, outbox_rows),
                ):
                    conn.execute(table.insert(), rows)
                seqs = (
                    conn.execute(
                        sa.select(destinations.c.seq)
                        .where(destinations.c.environment_id == environments[0])
                        .order_by(destinations.c.seq)
                    )
                    .scalars()
                    .all()
                )
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE"))
        finally:
            engine.dispose()
        probe = next(d for d in dest_rows if d["environment_id"] == environments[0])
        probe_log = next(r["id"] for r in log_rows if r["destination_id"] == probe["id"])
        yield Seeded(
            url,
            created.id,
            created.owner.id,
            environments[0],
            probe["id"],
            probe_log,
            seqs[-60],
            lanes,
        )


# --- a connection that explains what it runs ---------------------------------------------------


@dataclass
class Plan:
    sql: str
    root: dict[str, Any]

    def nodes(self) -> Iterator[dict[str, Any]]:
        todo = [self.root]
        while todo:
            node = todo.pop()
            yield node
            todo.extend(node.get("Plans", []))


# The statements as SQL with named parameters, for sa.text on the same connection.
_NAMED: sa.Dialect = psycopg2.dialect(paramstyle="named")  # type: ignore[no-untyped-call]


class Explaining(Connection):
    """Runs each statement under EXPLAIN ANALYZE in a savepoint rolled back at once (its
    plan kept in `plans`), then for real, on the wrapped connection."""

    def __init__(self, inner: Connection) -> None:
        self._inner = inner
        self.dialect = inner.dialect
        self.plans: list[Plan] = []

    async def _explain(self, statement: Any, parameters: Mapping[str, Any] | None) -> None:
        compiled: Any = statement.compile(
            dialect=_NAMED,
            column_keys=sorted(parameters) if parameters else None,
            compile_kwargs={"render_postcompile": True},
        )
        values = compiled.construct_params(parameters or {})
        await self._inner.execute(sa.text("SAVEPOINT explain"))
        try:
            found = (
                await self._inner.execute(
                    sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled)), values
                )
            ).scalar()
        finally:
            await self._inner.execute(sa.text("ROLLBACK TO SAVEPOINT explain"))
        document: Any = json.loads(found) if isinstance(found, str) else found
        self.plans.append(Plan(str(compiled), document[0]["Plan"]))

    async def execute(self, statement: sa.Executable, parameters: Any = None) -> Result:
        if parameters is None or isinstance(parameters, Mapping):
            await self._explain(statement, parameters)
        return await self._inner.execute(statement, parameters)

    async def scalar(self, statement: sa.Executable, parameters: Any = None) -> Any:
        return (await self.execute(statement, parameters)).scalar()

    async def first(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        await self._explain(prepared.statement, parameters)
        return await self._inner.first(prepared, parameters)

    async def all(
        self, prepared: Prepared, parameters: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        await self._explain(prepared.statement, parameters)
        return await self._inner.all(prepared, parameters)

    async def run(self, prepared: Prepared, parameters: Mapping[str, Any]) -> int:
        await self._explain(prepared.statement, parameters)
        return await self._inner.run(prepared, parameters)


class _Undo(Exception):
    """Ends the write transaction a scenario ran in, changing nothing."""


async def plans_of(url: str, work: Callable[[Connection], Awaitable[object]]) -> list[Plan]:
    db = Database(url, pool_size=1)
    explaining: Explaining | None = None
    try:
        async with db.write() as conn:
            # Price out what would hide a missing index: a whole-table scan, a bitmap
            # gathering rows in any order, a sort putting them back in order.
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await conn.execute(sa.text(f"SET LOCAL {setting} = off"))
            # Storage as on SSDs, where a random read costs about a sequential one (the
            # README's advice for production servers).
            await conn.execute(sa.text("SET LOCAL random_page_cost = 1.1"))
            explaining = Explaining(conn)
            await work(explaining)
            raise _Undo
    except _Undo:
        pass
    finally:
        await db.close()
    assert explaining is not None and explaining.plans, "the scenario ran no statement"
    return explaining.plans


def problems(plans: list[Plan], *, keyset: bool) -> list[str]:
    found = []
    for plan in plans:
        for node in plan.nodes():
            table = node.get("Relation Name")
            if table in BIG and node["Node Type"] == "Seq Scan":
                found.append(f"sequential scan of {table}: {plan.sql}")
            removed = node.get("Rows Removed by Filter", 0) * node.get("Actual Loops", 1)
            returned = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
            if table in BIG and removed > FILTER_SLACK + FILTER_FACTOR * returned:
                found.append(
                    f"{table}: {removed} rows read and dropped for {returned} kept "
                    f"({node['Node Type']} on {node.get('Index Name')}): {plan.sql}"
                )
            if keyset and node["Node Type"] in ("Sort", "Incremental Sort"):
                found.append(f"a keyset page sorts instead of walking an index: {plan.sql}")
    return found


# --- the hot queries -------------------------------------------------------------------------

Scenario = Callable[[Seeded, Connection], Awaitable[object]]


async def get_destination(s: Seeded, conn: Connection) -> object:
    return await destinations_store.locate(
        conn,
        destination_id=s.probe_destination,
        organization_id=s.organization_id,
        user_id=s.user_id,
        for_update=False,
    )


async def update_destination(s: Seeded, conn: Connection) -> object:
    found = await destinations_store.locate(
        conn,
        destination_id=s.probe_destination,
        organization_id=s.organization_id,
        user_id=s.user_id,
        for_update=True,
    )
    assert found is not None
    return await destinations_store.update(conn, found.row, {"name": "renamed"})


async def destinations_first_page(s: Seeded, conn: Connection) -> object:
    return await destinations_store.page(conn, environment_id=s.environment_id, after=0, limit=51)


async def destinations_deep_page(s: Seeded, conn: Connection) -> object:
    return await destinations_store.page(
        conn, environment_id=s.environment_id, after=s.deep_seq, limit=51
    )


async def send_routing(s: Seeded, conn: Connection) -> object:
    return (
        await destinations_store.recipient(conn, destination_id=s.probe_destination),
        await destinations_store.target(conn, destination_id=s.probe_destination),
    )


def _search(**filters: Any) -> Scenario:
    async def search(s: Seeded, conn: Connection) -> object:
        named = {k: (s.probe_destination if v == "probe" else v) for k, v in filters.items()}
        query = logs_store.LogQuery(environment_id=s.environment_id, **named)
        first = await logs_store.search(conn, query, before=logs_store.MAX_SEQ, limit=51)
        if len(first) == 51:  # and the next page, by cursor
            await logs_store.search(conn, query, before=first[49].seq, limit=51)
        return first

    return search


async def get_log(s: Seeded, conn: Connection) -> object:
    found = await logs_store.log_for_caller(
        conn, log_id=s.probe_log, organization_id=s.organization_id, user_id=s.user_id
    )
    assert found is not None
    return await logs_store.attempts_of(conn, s.probe_log)


async def deliver_one(s: Seeded, conn: Connection) -> object:
    """What a worker runs for one message: claim, read the log, record the attempt,
    finish the row (handing its lane on)."""
    now = clock.now()
    claimed = await queue_store.claim_due(
        conn, owner="w", now=now, lease_until=clock.after(60), limit=100, skip=[], postgres=True
    )
    assert claimed
    row = claimed[0]
    await logs_store.deliveries(conn, [row.log_id])
    attempt = logs_store.Attempt(new_id(), now, "succeeded", 200, None, 3)
    await logs_store.insert_attempt(
        conn,
        log_id=row.log_id,
        attempt=attempt,
        new_status="succeeded",
        reason=None,
        answer=None,
        file_name=None,
    )
    return await queue_store.remove(
        conn, row, owner="w", postgres=True, now=now, lease_until=clock.after(60)
    )


async def queue_bookkeeping(s: Seeded, conn: Connection) -> object:
    await queue_store.next_moment(conn)
    lane = s.lanes[0]
    await queue_store.pending(conn, destination_id=lane.split(":")[0])
    entry = queue_store.Entry(new_id(), lane.split(":")[0], lane, True, False, new_id())
    return await queue_store.append(conn, [entry], at=clock.now(), postgres=True)


SCENARIOS: dict[str, tuple[Scenario, bool]] = {
    "get destination": (get_destination, False),
    "update destination": (update_destination, False),
    "list destinations, first page": (destinations_first_page, True),
    "list destinations, deep page": (destinations_deep_page, True),
    "send: routing and delivery target": (send_routing, False),
    "search logs": (_search(), True),
    "search logs by status": (_search(status="failed"), True),
    "search logs by destination": (_search(destination_id="probe"), True),
    "search logs by destination and status": (
        _search(destination_id="probe", status="failed"),
        True,
    ),
    "get log": (get_log, False),
    "deliver one message": (deliver_one, False),
    "queue bookkeeping": (queue_bookkeeping, False),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_hot_queries_walk_indexes(seeded: Seeded, name: str) -> None:
    scenario, keyset = SCENARIOS[name]

    async def work(conn: Connection) -> object:
        return await scenario(seeded, conn)

    plans = asyncio.run(plans_of(seeded.url, work))
    assert problems(plans, keyset=keyset) == []
