#!/usr/bin/env python3
"""A small destination receiver to start from. Standard library only.

It answers Redox's verification handshake (POST with a JSON body, or GET with query
parameters), refuses a wrong verification token with 401, and prints every message it
receives. Delivery is at least once: a message may come twice (after a timeout, say), so
it remembers the `webhook-id` header (the log id, the same on every attempt) and answers a
second delivery 200 without handling it again. Run it, then point a destination's
`endpoint` at it:

    python3 examples/receiver.py --port 9000 --token my-verification-token
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("receiver")
MAX_BODY = 10 * 1024 * 1024
REMEMBERED = 10_000  # webhook-ids kept to recognise a second delivery


class Seen:
    """The webhook-ids of recent deliveries (a real receiver would keep them in its
    database, in the transaction that handles the message)."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, webhook_id: str) -> bool:
        with self._lock:
            if webhook_id in self._ids:
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > REMEMBERED:
                self._ids.popitem(last=False)
            return True


class Receiver(BaseHTTPRequestHandler):
    token = ""
    seen = Seen()

    def _token_ok(self, offered: str | None) -> bool:
        # Compare in constant time: the token is a shared secret.
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        challenge = query.get("challenge", [None])[0]
        offered = query.get("verification-token", [None])[0] or self.headers.get(
            "verification-token"
        )
        log.info("GET %s from %s", urlsplit(self.path).path, self.client_address[0])
        if challenge is None:
            self._answer(400, {"error": "expected a verification challenge"})
        elif not self._token_ok(offered):
            log.warning("verification refused: wrong verification token")
            self._answer(401, {"error": "wrong verification token"})
        else:
            log.info("verification answered (GET)")
            self._answer(200, {"challenge": challenge})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": "body too large"})
            return
        raw = self.rfile.read(length)
        if not self._token_ok(self.headers.get("verification-token")):
            log.warning("refused a POST with a wrong or missing verification-token header")
            self._answer(401, {"error": "wrong verification token"})
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if isinstance(body, dict) and "challenge" in body:
            log.info("verification answered (POST)")
            self._answer(200, {"challenge": body["challenge"]})
            return
        webhook_id = self.headers.get("webhook-id")
        if webhook_id and not self.seen.first_time(webhook_id):
            log.info("message %s received again; already handled", webhook_id)
            self._answer(200, {"received": True, "duplicate": True})
            return
        meta = body.get("Meta", {}) if isinstance(body, dict) else {}
        log.info(
            "message received: %s %s, log %s, from %s (%d bytes)",
            meta.get("DataModel"),
            meta.get("EventType"),
            webhook_id,
            (meta.get("Source") or {}).get("Name"),
            len(raw),
        )
        shown = json.dumps(body, indent=2) if body is not None else raw.decode(errors="replace")
        print(shown[:4000], flush=True)
        self._answer(200, {"received": True})

    def log_message(self, format: str, *args: object) -> None:
        log.debug(format, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--token", required=True, help="the destination's verificationToken")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Receiver.token = args.token
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    log.info("listening on http://%s:%d/", args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
