"""Redox's challenge handshake, sent exactly as Redox sends it.

POST carries `{"verification-token", "challenge"}` as JSON; GET carries the same two
values as query parameters. Both carry the `verification-token` header. The receiver
proves it is listening, and knows the token, by answering 2xx with the challenge in the
body (alone, as `{"challenge": ...}`, or anywhere in it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from waypost.destinations.collaborators import collaborators
from waypost.destinations.target import DeliveryTarget, Failure
from waypost.outbound import OutboundClient, OutboundError
from waypost.runtime import Runtime

MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    error: Failure | None


async def probe_cloud(rt: Runtime, target: DeliveryTarget) -> Outcome:
    """A cloud destination is verified by writing to its container (the delivery
    feature's probe, which names the field to look at when it fails)."""
    failure = await collaborators().cloud_probe(rt, target)
    if failure is None:
        return Outcome(None)
    return Outcome(Failure(failure.field, f"verification failed: {failure.message}"))


def _with_query(endpoint: str, extra: dict[str, str]) -> str:
    parts = urlsplit(endpoint)
    query = f"{parts.query}&{urlencode(extra)}" if parts.query else urlencode(extra)
    return urlunsplit(parts._replace(query=query))


async def handshake(
    outbound: OutboundClient, endpoint: str, token: str, method: str, *, timeout_seconds: float
) -> Outcome:
    challenge = str(uuid.uuid4())
    headers = {"verification-token": token}
    try:
        if method == "GET":
            url = _with_query(endpoint, {"challenge": challenge, "verification-token": token})
            answer = await outbound.request(
                "GET",
                url,
                headers=headers,
                timeout_seconds=timeout_seconds,
                max_body=MAX_ANSWER_BYTES,
            )
        else:
            answer = await outbound.request(
                "POST",
                endpoint,
                headers=headers,
                json={"verification-token": token, "challenge": challenge},
                timeout_seconds=timeout_seconds,
                max_body=MAX_ANSWER_BYTES,
            )
    except OutboundError as exc:
        return Outcome(Failure("endpoint", f"verification failed: {exc.message}"))
    status = answer.status
    if 300 <= status < 400:
        where = f" to {answer.location}" if answer.location else ""
        return Outcome(
            Failure(
                "endpoint",
                f"verification failed: the endpoint answered HTTP {status}, a redirect{where}; "
                "redirects are not followed, so use the final URL",
            )
        )
    if status in (401, 403):
        return Outcome(
            Failure(
                "verificationToken",
                f"verification failed: the receiver rejected the verification token "
                f"(HTTP {status})",
            )
        )
    if not 200 <= status < 300:
        return Outcome(
            Failure(
                "endpoint", f"verification failed: the endpoint answered HTTP {status}, not 2xx"
            )
        )
    if challenge not in answer.body.decode("utf-8", errors="replace"):
        return Outcome(
            Failure(
                "endpoint",
                f"verification failed: the endpoint answered HTTP {status} but its body does not "
                "contain the challenge that was sent",
            )
        )
    return Outcome(None)
