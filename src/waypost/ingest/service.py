"""The send API's rules: who may send what where, and accepting a message durably.

A message is accepted only once it, one log per destination and the queue entries are
committed together: a 200 means nothing can be lost any more. Synchronous queries
(Redox's request/respond event types) skip the queue and relay the receiver's answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from waypost import clock
from waypost.db import Connection, canonical_id, is_unique_violation, new_id
from waypost.delivery.senders import http as http_sender
from waypost.destinations import service as destinations
from waypost.fields import has_control
from waypost.http import BadGateway, BadRequest, Conflict, Forbidden, Invalid, NotFound
from waypost.ingest import store
from waypost.logs import service as logs
from waypost.queue import service as queue
from waypost.runtime import Runtime
from waypost.sources.service import SendingSource
from waypost.subscriptions import service as subscriptions

IDEMPOTENCY_SECONDS = 24 * 3600
MAX_IDEMPOTENCY_KEY = 255

# Redox's synchronous event types, by data model written without spaces
# ("Clinical Summary" and "ClinicalSummary" are one data model).
SYNCHRONOUS: dict[str, frozenset[str]] = {
    "ClinicalSummary": frozenset({"PatientQuery", "VisitQuery", "DocumentQuery", "DocumentGet"}),
    "ClinicalDecisions": frozenset({"Request"}),
    "Media": frozenset({"Query"}),
    "Notes": frozenset({"Query"}),
    "Order": frozenset({"Query"}),
    "Organization": frozenset({"Query"}),
    "PatientAdmin": frozenset({"CensusQuery", "VisitQuery"}),
    "PatientSearch": frozenset({"Query", "LocationQuery"}),
    "Provider": frozenset({"ProviderQuery"}),
    "Referral": frozenset({"Query"}),
    "Results": frozenset({"Query"}),
    "Scheduling": frozenset({"AvailableSlots", "Booked"}),
    "SSO": frozenset({"Sign-on"}),
    "Vaccination": frozenset({"PatientQuery"}),
}


def data_model_key(data_model: str) -> str:
    return data_model.replace(" ", "")


def is_synchronous(data_model: str, event_type: str) -> bool:
    return event_type in SYNCHRONOUS.get(data_model_key(data_model), frozenset())


@dataclass(frozen=True, slots=True)
class Message:
    document: dict[str, Any]
    meta: dict[str, Any]
    data_model: str
    event_type: str
    test: bool
    listed: list[str] | None  # Meta.Destinations[].ID as given, or None when absent


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes


def _required_text(meta: dict[str, Any], name: str) -> str:
    value = meta.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest.field(f"Meta.{name}", "is required, a non-empty string")
    if len(value) > 255:
        raise BadRequest.field(f"Meta.{name}", "must be at most 255 characters")
    if has_control(value):  # PostgreSQL cannot keep a NUL; no data model has a control
        raise BadRequest.field(f"Meta.{name}", "must not contain control characters")
    return value


def parse(raw: bytes) -> Message:
    """The message and its routing fields; 400 naming the field for anything malformed."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest.field("body", "is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest.field("body", "must be a JSON object")
    meta = document.get("Meta")
    if not isinstance(meta, dict):
        raise BadRequest.field("Meta", "is required, an object with DataModel and EventType")
    data_model = _required_text(meta, "DataModel")
    event_type = _required_text(meta, "EventType")
    test = meta.get("Test")
    if test is not None and not isinstance(test, bool):
        raise BadRequest.field("Meta.Test", "must be true or false")
    given = meta.get("Destinations")
    listed: list[str] | None = None
    if given is not None:
        if not isinstance(given, list) or not given:
            raise BadRequest.field(
                "Meta.Destinations",
                'must list at least one destination as [{"ID": ...}], or be left out '
                "to send to every subscribed destination",
            )
        listed = []
        for index, entry in enumerate(given):
            field = f"Meta.Destinations[{index}].ID"
            wanted = entry.get("ID") if isinstance(entry, dict) else None
            if not isinstance(wanted, str) or not wanted:
                raise BadRequest.field(field, "is required, a destination id")
            if wanted in listed:
                raise BadRequest.field(field, f"lists destination {wanted} twice")
            listed.append(wanted)
    return Message(document, meta, data_model, event_type, bool(test), listed)


def _check_idempotency_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()):
        raise BadRequest.field(
            "Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        )


async def _remembered(
    rt: Runtime, source: SendingSource, key: str, body_hash: str
) -> Answer | None:
    async with rt.db.read() as conn:
        found = await store.find(conn, source_id=source.id, key=key)
    if found is None or found.created_at < clock.after(-IDEMPOTENCY_SECONDS):
        return None
    if found.body_hash != body_hash:
        raise Conflict(
            "This Idempotency-Key was used in the past 24 hours with a different body; "
            "use a new key for a new message."
        )
    return Answer(found.answer.encode())


async def _route(
    conn: Connection, source: SendingSource, message: Message
) -> list[destinations.Recipient]:
    """The destinations this message goes to, in the order it names them. Every rule on
    every destination is checked before anything is queued for any; run inside the
    transaction that queues, so what was checked is what holds at COMMIT."""
    if message.listed is None:
        subscribed = await subscriptions.subscribed_destinations(
            conn, source_id=source.id, data_model=message.data_model
        )
        if not subscribed:
            raise Forbidden("No subscriptions found for message")
        wanted = [("Meta.Destinations", d) for d in subscribed]
    else:
        wanted = [(f"Meta.Destinations[{i}].ID", d) for i, d in enumerate(message.listed)]
    found: list[tuple[str, destinations.Recipient]] = []
    for field, given in wanted:
        destination_id = canonical_id(given)
        recipient = (
            await destinations.recipient(conn, destination_id=destination_id)
            if destination_id
            else None
        )
        if recipient is None or recipient.environment_id != source.environment_id:
            raise NotFound(f"Destination {given} was not found in this source's environment.")
        found.append((field, recipient))
    if message.listed is not None:
        for _, recipient in found:
            if not await subscriptions.is_subscribed(
                conn,
                source_id=source.id,
                data_model=message.data_model,
                destination_id=recipient.id,
            ):
                raise Forbidden(
                    f"No subscription for {message.data_model} from this source to {recipient.id}"
                )
    for field, recipient in found:
        if recipient.cloud and not recipient.receiving:
            raise Invalid(
                field,
                f"destination {recipient.id} ({recipient.name}) has no auth credential; "
                "attach one that may write to its container before sending to it",
            )
        if not recipient.receiving:
            raise Invalid(
                field,
                f"destination {recipient.id} ({recipient.name}) is not verified; "
                "verify its receiver before sending to it",
            )
    return [recipient for _, recipient in found]


def _answer_meta(
    message: Message,
    source: SendingSource,
    targets: list[destinations.Recipient],
    logs_: list[dict[str, str]],
) -> bytes:
    meta = {
        **message.meta,
        "Source": {"ID": source.id, "Name": source.name},
        "Destinations": [{"ID": t.id, "Name": t.name} for t in targets],
        "Logs": logs_,
    }
    return orjson.dumps({"Meta": meta})


async def accept(
    rt: Runtime, *, source: SendingSource, raw: bytes, idempotency_key: str | None
) -> Answer:
    message = parse(raw)
    _check_idempotency_key(idempotency_key)
    body_hash = hashlib.sha256(raw).hexdigest()
    if idempotency_key is not None:
        again = await _remembered(rt, source, idempotency_key, body_hash)
        if again is not None:
            return again
    synchronous = is_synchronous(message.data_model, message.event_type)
    if synchronous and (message.listed is None or len(message.listed) != 1):
        raise BadRequest.field(
            "Meta.Destinations", "a synchronous query names exactly one destination"
        )
    at = clock.now()
    can_go = False
    body = raw.decode("utf-8")
    postgres = rt.db.dialect == "postgresql"
    try:
        async with rt.db.write() as conn:
            targets = await _route(conn, source, message)
            new_logs = [
                logs.NewLog(
                    id=new_id(),
                    destination_id=t.id,
                    destination_name=t.name,
                    type="request" if synchronous else "send",
                )
                for t in targets
            ]
            attempt_ids = [new_id() for _ in targets]
            answer = _answer_meta(
                message,
                source,
                targets,
                [
                    {"ID": log.id, "AttemptID": a}
                    for log, a in zip(new_logs, attempt_ids, strict=True)
                ],
            )
            if idempotency_key is not None and not synchronous:
                await store.remember(
                    conn,
                    source_id=source.id,
                    key=idempotency_key,
                    body_hash=body_hash,
                    answer=answer.decode(),
                    at=at,
                    expired_before=clock.after(-IDEMPOTENCY_SECONDS),
                )
            await logs.record_message(
                conn,
                message_id=new_id(),
                environment_id=source.environment_id,
                organization_id=source.organization_id,
                source_id=source.id,
                source_name=source.name,
                data_model=message.data_model,
                event_type=message.event_type,
                test=message.test,
                body=body,
                new_logs=new_logs,
                at=at,
            )
            if not synchronous:
                entries = [
                    _entry(t, log.id, a, message, at)
                    for t, log, a in zip(targets, new_logs, attempt_ids, strict=True)
                ]
                can_go = await queue.enqueue(conn, entries, at=at, postgres=postgres)
    except sa.exc.IntegrityError as exc:
        # The same key from a request that committed first: answer as it was answered.
        if idempotency_key is None or not is_unique_violation(exc):
            raise
        again = await _remembered(rt, source, idempotency_key, body_hash)
        if again is None:
            raise
        return again
    if synchronous:
        return await _relay(rt, targets[0].id, new_logs[0], attempt_ids[0])
    if can_go:  # behind a lane's head a message waits for that head, not for a worker
        rt.delivery_wake.set()
    return Answer(answer)


def _entry(
    target: destinations.Recipient, log_id: str, attempt_id: str, message: Message, at: str
) -> queue.Entry:
    batch = target.delivery.batch
    lane, shared = queue.lane_for(
        destination_id=target.id,
        log_id=log_id,
        mode=str(target.delivery.mode),
        ordering_key=target.delivery.ordering_key,
        message=message.document,
        batch_of=None if batch is None else message.data_model,
    )
    return queue.Entry(
        log_id=log_id,
        destination_id=target.id,
        lane=lane,
        shared_lane=shared,
        held=False,
        first_attempt_id=attempt_id,
        batch_max=None if batch is None else batch.max_messages,
        due_at=None if batch is None else clock.after(batch.max_seconds, clock.parse(at)),
    )


async def _relay(rt: Runtime, destination_id: str, log: logs.NewLog, attempt_id: str) -> Answer:
    """Sends a synchronous query now and answers with the receiver's JSON."""
    target = await destinations.delivery_target(rt, destination_id=destination_id)
    if target is None:
        raise NotFound(f"Destination {destination_id} was deleted before the query was sent.")
    async with rt.db.read() as conn:
        delivery = (await logs.deliveries(conn, [log.id]))[log.id]
    attempt_at = clock.now()
    outcome = await http_sender.send(
        rt,
        target,
        delivery,
        attempt_id,
        timeout_seconds=rt.settings.query_timeout_seconds,
        max_answer=rt.settings.max_message_bytes,
    )
    error = outcome.error
    if outcome.ok:
        try:
            orjson.loads(outcome.answer)
        except orjson.JSONDecodeError:
            error = f"the endpoint answered HTTP {outcome.http_status} without a JSON body"
    async with rt.db.write() as conn:
        await logs.record_attempt(
            conn,
            log_id=log.id,
            attempt=logs.Attempt(
                id=attempt_id,
                attempt_at=attempt_at,
                status="failed" if error else "succeeded",
                http_status=outcome.http_status,
                error=error,
                duration_ms=outcome.duration_ms,
            ),
            status="failed" if error else "succeeded",
            reason=error,
            answer=outcome.answer.decode("utf-8", errors="replace") if outcome.answer else None,
        )
    if error is not None:
        raise BadGateway(f"Destination {target.id} ({target.name}) did not answer: {error}.")
    return Answer(outcome.answer)
