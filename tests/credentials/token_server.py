"""A real OAuth 2.0 token server on loopback, strict about what it is sent.

It answers client_credentials requests the way an authorization server does: it checks
the client id and secret (in HTTP Basic or in the body, whichever it is told to expect,
and refuses the other), the configured field names, the extra parameters (scope,
audience, resource, a custom field) and the content type, and for SMART Backend Services
it verifies the client assertion's signature and claims. It hands out numbered tokens
that expire, and counts them. `mode` makes it misbehave: `html`, `404`, `sleep`, `garbage`, `echo`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from tests.support import free_port

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Seen:
    headers: dict[str, str]  # names in lower case
    body: bytes
    params: dict[str, str]


@dataclass
class Expect:
    """What a valid request looks like. `params` must all be present with these values."""

    client_id: str = "client-1"
    client_secret: str = "s3cret-value"
    placement: str = "basic"  # "basic" or "body"
    content_type: str = "application/x-www-form-urlencoded"
    grant_type_name: str = "grant_type"
    client_id_name: str = "client_id"
    client_secret_name: str = "client_secret"
    params: dict[str, str] = field(default_factory=dict)
    # The answer
    token_field: str = "access_token"
    expires_field: str = "expires_in"
    expires_in: Any = 3600  # None: the answer says nothing about expiry
    # SMART Backend Services: the client's public key, and the `kid` it must name
    public_key: PublicKeyTypes | None = None
    algorithm: str = "RS384"
    key_id: str | None = None


class TokenServer:
    def __init__(self, expect: Expect | None = None) -> None:
        self.expect = expect or Expect()
        self.mode = "ok"
        self.issued = 0
        self.seen: list[Seen] = []
        self.jtis: set[str] = set()
        self.failures: list[str] = []  # why each refused request was refused
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.port = free_port()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/token"

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the token endpoint ------------------------------------------------------------

    def answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.seen.append(seen)
        if self.mode == "404":
            return 404, {"Content-Type": "text/plain"}, b"no such path"
        if self.mode == "html":
            return 200, {"Content-Type": "text/html"}, b"<html><body>Sign in</body></html>"
        if self.mode == "sleep":
            self.stopping.wait(5)
            return 200, {}, b"{}"
        refusal = self.refusal(seen)
        if self.mode == "echo":
            # A careless server that repeats what it was sent, secret included.
            refusal = f"rejected {json.dumps(seen.params)}"
        if refusal is not None:
            with self.lock:
                self.failures.append(refusal)
            body = {"error": "invalid_client", "error_description": refusal}
            return 401, {"Content-Type": "application/json"}, json.dumps(body).encode()
        with self.lock:
            self.issued += 1
            token = f"token-{self.issued}-{time.monotonic_ns()}"
        answer: dict[str, Any] = {self.expect.token_field: token, "token_type": "Bearer"}
        if self.expect.expires_in is not None:
            answer[self.expect.expires_field] = self.expect.expires_in
        if self.mode == "garbage":
            answer = {"unexpected": True}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    def refusal(self, seen: Seen) -> str | None:
        """Why the request is not a valid one, or None."""
        expect = self.expect
        content_type = seen.headers.get("content-type", "").split(";")[0].strip()
        if content_type != expect.content_type:
            return f"content type {content_type!r}, expected {expect.content_type!r}"
        params = seen.params
        if expect.public_key is not None:
            return self.smart_refusal(seen)
        if params.get(expect.grant_type_name) != "client_credentials":
            return f"no {expect.grant_type_name}=client_credentials"
        for name, value in expect.params.items():
            if params.get(name) != value:
                return f"{name} is {params.get(name)!r}, expected {value!r}"
        basic = seen.headers.get("authorization")
        if expect.placement == "basic":
            if expect.client_secret_name in params or "client_secret" in params:
                return "the secret must not be in the body"
            if basic is None or not basic.startswith("Basic "):
                return "no HTTP Basic authorization"
            pair = base64.b64decode(basic.removeprefix("Basic ")).decode()
            client_id, _, secret = pair.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        else:
            if basic is not None:
                return "credentials must not be in HTTP Basic"
            client_id = params.get(expect.client_id_name, "")
            secret = params.get(expect.client_secret_name, "")
        if client_id != expect.client_id:
            return "unknown client"
        if secret != expect.client_secret:
            return "wrong client secret"
        return None

    def smart_refusal(self, seen: Seen) -> str | None:
        expect = self.expect
        params = seen.params
        if params.get("grant_type") != "client_credentials":
            return "no grant_type=client_credentials"
        if params.get("client_assertion_type") != JWT_BEARER:
            return "wrong client_assertion_type"
        for name, value in expect.params.items():
            if params.get(name) != value:
                return f"{name} is {params.get(name)!r}, expected {value!r}"
        if "authorization" in seen.headers or "client_secret" in params:
            return "a SMART client authenticates with its assertion only"
        assertion = params.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                expect.public_key,  # type: ignore[arg-type]
                algorithms=[expect.algorithm],
                audience=self.url,
                issuer=expect.client_id,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return f"bad client assertion: {exc}"
        if header.get("typ") != "JWT":
            return "the assertion's typ is not JWT"
        if header.get("kid") != expect.key_id:
            return f"kid is {header.get('kid')!r}, expected {expect.key_id!r}"
        if claims["sub"] != expect.client_id:
            return "sub is not the client id"
        if claims["exp"] > time.time() + 300:
            return "exp is more than five minutes away"
        with self.lock:
            if claims["jti"] in self.jtis:
                return "jti replayed"
            self.jtis.add(claims["jti"])
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: TokenServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client that gives up (a timeout) is part of the tests


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        params: dict[str, str] = {}
        if headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = json.loads(body)
                params = {str(k): v for k, v in parsed.items()} if isinstance(parsed, dict) else {}
            except ValueError:
                params = {}
        else:
            params = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        status, reply_headers, reply = self.server.owner.answer(Seen(headers, body, params))
        try:
            self.send_response(status)
            for name, value in reply_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply)
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return None
