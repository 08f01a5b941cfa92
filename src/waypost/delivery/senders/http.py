"""Delivery to a URL destination: one POST per attempt, as Redox sends it.

The body is the message as accepted, with `Meta.Source`, `Meta.Destinations` (this
destination) and `Meta.Logs` (this log and attempt) filled in: logs' `delivered_body`,
built as the log API's payload shows it. Headers: the JSON content type,
`verification-token`, the destination's auth credential, and `webhook-id` (the log id,
the same on every attempt) so that a receiver can drop a second delivery.
Success is any 2xx; anything else, redirects included (never followed), is a failure
with its reason. Every request goes through the guarded outbound module.
"""

from __future__ import annotations

import time

from waypost.credentials import service as credentials
from waypost.credentials.tokens import TokenError
from waypost.delivery.senders import Outcome
from waypost.destinations.target import DeliveryTarget
from waypost.logs.service import Delivery, delivered_body
from waypost.outbound import OutboundError
from waypost.runtime import Runtime

MAX_ANSWER_BYTES = 64 * 1024


async def _headers(rt: Runtime, target: DeliveryTarget, delivery: Delivery) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "webhook-id": delivery.log_id}
    if target.verification_token is not None:
        headers["verification-token"] = target.verification_token
    if target.auth_credential_id is not None:
        headers.update(await credentials.authorization_headers(rt, target.auth_credential_id))
    return headers


async def send(
    rt: Runtime,
    target: DeliveryTarget,
    delivery: Delivery,
    attempt_id: str,
    *,
    timeout_seconds: float,
    max_answer: int = MAX_ANSWER_BYTES,
) -> Outcome:
    started = time.monotonic()

    def outcome(
        ok: bool,
        status: int | None,
        error: str | None,
        retry_after: str | None = None,
        answer: bytes = b"",
    ) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(ok, status, error, retry_after, elapsed, answer)

    body = delivered_body(delivery, attempt_id)
    refreshed = False
    while True:
        try:
            headers = await _headers(rt, target, delivery)
        except TokenError as exc:
            return outcome(False, None, f"no access token from the auth credential: {exc}")
        try:
            answer = await rt.outbound.request(
                "POST",
                target.endpoint or "",  # a URL destination without one is held, never claimed
                headers=headers,
                data=body,
                timeout_seconds=timeout_seconds,
                max_body=max_answer,
            )
        except OutboundError as exc:
            return outcome(False, None, exc.message)
        status = answer.status
        if status == 401 and target.auth_credential_id and not refreshed:
            # An OAuth token may be revoked before its expiry: fetch a new one, once.
            await rt.tokens.forget(target.auth_credential_id)
            refreshed = True
            continue
        if 200 <= status < 300:
            return outcome(True, status, None, answer=answer.body)
        if 300 <= status < 400:
            where = f" to {answer.location}" if answer.location else ""
            error = f"the endpoint answered HTTP {status}, a redirect{where}, which is not followed"
        else:
            error = f"the endpoint answered HTTP {status}"
        retry_after = answer.headers.get("Retry-After") if status in (429, 503) else None
        return outcome(False, status, error, retry_after, answer.body)
