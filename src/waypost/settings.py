"""WAYPOST_* settings, read from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYPOST_", extra="ignore")

    # Where the embedded database and the generated secret key live.
    data_dir: Path = Path("var")
    # Plain URLs: sqlite:///path/to.db or postgresql://user@host:port/db.
    # Empty means the embedded SQLite file under data_dir.
    database_url: str = ""
    # Comma-separated base64 keys (32 bytes each). The first encrypts, all decrypt.
    secret_key: str = ""
    # Connections per process for PostgreSQL; sized for the concurrency one process serves.
    db_pool_size: int = Field(default=20, ge=1, le=500)
    # Comma-separated CIDRs the outbound guard lets through (loopback, private ranges...).
    outbound_allow: str = ""
    # A PEM bundle of extra certificate authorities to trust for outbound TLS.
    ca_bundle: Path | None = None
    # The address clients use, when a proxy sits in front (the token URL, a JWT's aud).
    public_url: str = ""
    # Redox's documented limit, per client address; 0 turns it off.
    rate_limit_requests: int = Field(default=10_000, ge=0)
    rate_limit_window_seconds: float = Field(default=300.0, gt=0)
    verify_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Delivery: each attempt's limit, a factor on every retry delay (for tests and
    # demos), and how many sends one worker process keeps in flight.
    delivery_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    retry_scale: float = Field(default=1.0, gt=0, le=100)
    worker_concurrency: int = Field(default=100, ge=1, le=1000)
    # Whether `waypost serve` delivers too (`--no-worker` turns it off).
    delivery_worker: bool = True
    # The send API: Redox's 40 MB quota, and its 120 s budget for a synchronous query.
    max_message_bytes: int = Field(default=40 * 1024 * 1024, ge=1024)
    query_timeout_seconds: float = Field(default=60.0, gt=0, le=120)
    # Where a cloud destination's storage account answers; `{account}` is its
    # storageAccountName. Point it at Azurite (http://127.0.0.1:10000/{account}) to try
    # cloud delivery without Azure.
    azure_blob_endpoint: str = "https://{account}.blob.core.windows.net"
    # A batch file holds at most this many bytes of messages (as accepted; at least one
    # message), so that a batch of large messages stays one request and bounded memory.
    max_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    @field_validator("azure_blob_endpoint")
    @classmethod
    def _has_account(cls, value: str) -> str:
        if "{account}" not in value or not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL template containing {account}")
        return value.rstrip("/")

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'waypost.db'}"
