"""Real loopback HTTP(S) receivers for verification tests, and test certificates.

A `Receiver` is a stdlib HTTP server in a background thread. It records every request it
gets (`requests`) and answers with a `Responder`, a function of the recorded request.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import free_port


@dataclass(frozen=True)
class Seen:
    """One request as the receiver got it."""

    method: str
    path: str  # the path alone, without the query
    raw_query: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.raw_query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)

    def challenge(self) -> str | None:
        """The challenge this request carries, whichever way it was sent."""
        if self.method == "GET":
            return self.query.get("challenge", [None])[0]
        try:
            body = self.json()
        except ValueError:
            return None
        found = body.get("challenge") if isinstance(body, dict) else None
        return found if isinstance(found, str) else None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (cut short when the receiver stops)


Responder = Callable[[Seen], Reply]


def challenge_reply(style: str = "json", token: str | None = None) -> Responder:
    """Answers the handshake correctly: 401 when `token` is given and the header differs;
    otherwise 200 with the challenge `alone`, as `json` ({"challenge": ...}) or `anywhere`."""

    def respond(seen: Seen) -> Reply:
        if token is not None and seen.headers.get("verification-token") != token:
            return Reply(401, b'{"error": "wrong verification token"}')
        challenge = seen.challenge() or ""
        if style == "alone":
            return Reply(200, challenge.encode(), {"Content-Type": "text/plain"})
        if style == "json":
            return Reply(200, json.dumps({"challenge": challenge}).encode())
        if style == "anywhere":
            text = f"<html><body><p>ok</p><pre>received {challenge}, thanks</pre></body></html>"
            return Reply(200, text.encode(), {"Content-Type": "text/html"})
        raise ValueError(style)

    return respond


def fixed_reply(status: int, body: bytes = b"", **headers: str) -> Responder:
    def respond(_seen: Seen) -> Reply:
        return Reply(status, body, dict(headers))

    return respond


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (or rejects our certificate) is part of the tests.
        return None


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.request.settimeout(10)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def _handle(self) -> None:
        receiver = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(
            method=self.command,
            path=parts.path,
            raw_query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        with receiver.lock:
            receiver.requests.append(seen)
        reply = receiver.responder(seen)
        if reply.delay and receiver.stopping.wait(reply.delay):
            return
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up (a timeout, or a capped read)
            pass
        self.close_connection = True

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        return None


class Receiver:
    """An HTTP(S) server on loopback in a background thread. Use as a context manager."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.responder: Responder = responder or challenge_reply()
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port or 0), _Handler)
        self._server.owner = self
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.host = host
        self.port: int = self._server.server_address[1]
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    def url_for(self, path_and_query: str, host: str | None = None) -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{self.scheme}://{name}:{self.port}/{path_and_query.lstrip('/')}"

    @property
    def seen(self) -> list[Seen]:
        with self.lock:
            return list(self.requests)

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def receiving(responder: Responder | None = None, **kwargs: Any) -> Iterator[Receiver]:
    receiver = Receiver(responder, **kwargs)
    try:
        yield receiver
    finally:
        receiver.stop()


def unused_url() -> str:
    """A loopback URL on a port where nothing listens: the connection is refused."""
    return f"http://127.0.0.1:{free_port()}/"


def is_uuid4(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return parsed.version == 4 and str(parsed) == value


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_pem: Path  # the test CA's certificate, for a ca_bundle
    cert_pem: Path  # the server certificate (127.0.0.1, ::1 and localhost), then the CA's
    key_pem: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_pem), str(self.key_pem))
        return context


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed CA and a server certificate it signed, written as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Waypost Test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.IPAddress(ipaddress.IPv6Address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pem = serialization.Encoding.PEM
    files.ca_pem.write_bytes(ca_cert.public_bytes(pem))
    files.cert_pem.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    files.key_pem.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files
