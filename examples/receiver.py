#!/usr/bin/env python3
"""A small destination receiver to start from. Standard library only.

It answers Redox's verification handshake (POST with a JSON body, or GET with query
parameters), refuses a wrong verification token with 401, and logs every request it
receives. Run it, then point a destination's `endpoint` at it:

    python3 examples/receiver.py --port 9000 --token my-verification-token
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("receiver")
MAX_BODY = 10 * 1024 * 1024


class Receiver(BaseHTTPRequestHandler):
    token = ""

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
        log.info("message received: %d bytes: %s", len(raw), raw[:500].decode(errors="replace"))
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
