"""Azurite, Microsoft's Azure Storage emulator, started on a free loopback port.

Installed by the project (tools/azurite, `make azurite`, which `make test` runs first);
started with --skipApiVersionCheck (the SDK speaks a newer API version than Azurite 3.35
knows) and --disableTelemetry (it would otherwise call out to Microsoft). With `tls` it
serves HTTPS with the given certificate, and with `oauth` it checks bearer tokens' issuer,
audience and lifetime (`--oauth basic`, which needs HTTPS).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.receivers import TlsFiles
from tests.support import free_port, listening_process

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Azurite:
    port: int
    scheme: str

    @property
    def endpoint_template(self) -> str:
        """For WAYPOST_AZURE_BLOB_ENDPOINT: Azurite puts the account in the path."""
        return f"{self.scheme}://127.0.0.1:{self.port}/{{account}}"

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.account_url};"
        )


@contextmanager
def running_azurite(
    workdir: Path, *, tls: TlsFiles | None = None, oauth: bool = False
) -> Iterator[Azurite]:
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} is missing: run `make azurite` (npm installs it)")
    if shutil.which("node") is None:
        raise RuntimeError("azurite needs Node.js on the PATH")
    port = free_port()
    command = [
        str(BINARY),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
    ]
    if tls is not None:
        command += ["--cert", str(tls.cert_pem), "--key", str(tls.key_pem)]
    if oauth:
        command += ["--oauth", "basic"]
    with listening_process(command, port, workdir / "azurite.out", cwd=workdir):
        yield Azurite(port, "https" if tls is not None else "http")
