"""Logs written as ingest and delivery write them: through the logs service's write side."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support import Org
from waypost.db import Database, new_id
from waypost.logs import service as logs
from waypost.logs.service import Attempt, NewLog

API = "/platform/v1"


@dataclass
class Sent:
    """One message to one destination, with the attempts made so far."""

    env_id: str
    at: str
    data_model: str = "PatientAdmin"
    event_type: str = "NewPatient"
    type: str = "send"
    test: bool = False
    source_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    source_name: str = "EHR"
    destination_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    destination_name: str = "Receiver"
    body: dict[str, Any] = field(
        default_factory=lambda: {
            "Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"},
            "Patient": {"Identifiers": [{"ID": "0000000001", "IDType": "MR"}]},
        }
    )
    # (attempt_at, attempt status, http status, error, log status after, reason, answer)
    attempts: list[tuple[str, str, int | None, str | None, str, str | None, str | None]] = field(
        default_factory=list
    )


@dataclass(frozen=True)
class Written:
    log_id: str
    attempt_ids: list[str]


def write(org: Org, sent: Sent) -> Written:
    log_id = new_id()
    attempt_ids = [new_id() for _ in sent.attempts]

    async def run(db: Database) -> None:
        async with db.write() as conn:
            await logs.record_message(
                conn,
                message_id=new_id(),
                environment_id=sent.env_id,
                organization_id=org.id,
                source_id=sent.source_id,
                source_name=sent.source_name,
                data_model=sent.data_model,
                event_type=sent.event_type,
                test=sent.test,
                body=json.dumps(sent.body),
                new_logs=[NewLog(log_id, sent.destination_id, sent.destination_name, sent.type)],
                at=sent.at,
            )
        for attempt_id, (at, status, http_status, error, after, reason, answer) in zip(
            attempt_ids, sent.attempts, strict=True
        ):
            async with db.write() as conn:
                await logs.record_attempt(
                    conn,
                    log_id=log_id,
                    attempt=Attempt(attempt_id, at, status, http_status, error, 12),
                    status=after,
                    reason=reason,
                    answer=answer,
                )

    org.server.run(run)
    return Written(log_id, attempt_ids)


def search_url(env_id: str) -> str:
    return f"{API}/environments/{env_id}/logs/search/metadata"


def log_url(org_id: int | str, log_id: str) -> str:
    return f"{API}/organizations/{org_id}/logs/{log_id}"
