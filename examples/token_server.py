#!/usr/bin/env python3
"""A small OAuth 2.0 token server to try auth credentials against. Standard library only.

It answers `client_credentials` token requests as an authorization server does: the
client id and secret in HTTP Basic (form-encoded first, as RFC 6749 says) or in the body,
the body form-encoded or JSON, and a fresh random bearer token for a client it knows. A
wrong client is refused with 401 `invalid_client`, another grant type with 400. It prints
one line per request (never the secret or the token). Run it, then point an
`OAuth_2.0_2-legged` credential's `url` at it and `test` the credential:

    python3 examples/token_server.py --port 9001 \
        --client-id waypost --client-secret the-client-secret

Not for production: tokens are not kept, so nothing can check them later.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import logging
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote_plus

log = logging.getLogger("token_server")
MAX_BODY = 64 * 1024


class TokenServer(BaseHTTPRequestHandler):
    client_id = ""
    client_secret = ""
    expires_in = 3600

    def _answer(self, status: int, body: dict[str, object], *headers: tuple[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # RFC 6749 section 5.1
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, error: str, description: str) -> None:
        log.info("refused %s: %s", self.path, description)
        extra = [("WWW-Authenticate", 'Basic realm="token"')] if status == 401 else []
        self._answer(status, {"error": error, "error_description": description}, *extra)

    def _params(self) -> dict[str, str] | None:
        """The request's parameters, form-encoded or JSON; None when it cannot be read."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                parsed = json.loads(body or "{}")
            except ValueError:
                return None
            if not isinstance(parsed, dict):
                return None
            return {str(k): str(v) for k, v in parsed.items()}
        return dict(parse_qsl(body, keep_blank_values=True))

    def _client(self, params: dict[str, str]) -> tuple[str, str] | None:
        """(client id, secret) from HTTP Basic, else from the body."""
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = decoded.partition(":")
            return (unquote_plus(user), unquote_plus(password)) if sep else None
        if "client_id" in params and "client_secret" in params:
            return params["client_id"], params["client_secret"]
        return None

    def do_POST(self) -> None:
        params = self._params()
        if params is None:
            self._refuse(400, "invalid_request", "the body is not a form or a JSON object")
            return
        if params.get("grant_type") != "client_credentials":
            self._refuse(400, "unsupported_grant_type", "only client_credentials is served")
            return
        client = self._client(params)
        # Compare in constant time: the secret is a shared secret.
        known = client is not None and (
            hmac.compare_digest(client[0].encode(), self.client_id.encode())
            & hmac.compare_digest(client[1].encode(), self.client_secret.encode())
        )
        if not known:
            self._refuse(401, "invalid_client", "unknown client id or wrong secret")
            return
        answer: dict[str, object] = {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if "scope" in params:
            answer["scope"] = params["scope"]
        log.info("issued a token to %s (scope %s)", self.client_id, params.get("scope", "-"))
        self._answer(200, answer)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request is printed above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9001, help="port to listen on")
    parser.add_argument("--client-id", required=True, help="the one client id accepted")
    parser.add_argument("--client-secret", required=True, help="its secret")
    parser.add_argument(
        "--expires-in", type=int, default=3600, help="each token's lifetime in seconds"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    TokenServer.client_id = args.client_id
    TokenServer.client_secret = args.client_secret
    TokenServer.expires_in = args.expires_in
    try:
        server = ThreadingHTTPServer((args.host, args.port), TokenServer)
    except OSError as exc:
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    log.info("token server on http://%s:%d/ (any path)", args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
