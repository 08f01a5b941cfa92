"""Secrets at rest: AES-256-GCM under WAYPOST_SECRET_KEY, and hashing of API tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1"


class SecretKeyError(ValueError):
    """WAYPOST_SECRET_KEY is missing or malformed."""


def _key_id(key: bytes) -> str:
    # Names the key without revealing it, so a ciphertext says which key opens it.
    return hashlib.sha256(b"waypost-key-id" + key).hexdigest()[:8]


class SecretBox:
    """Encrypts with the first key; decrypts with whichever key sealed the value."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("WAYPOST_SECRET_KEY holds no key")
        for key in keys:
            if len(key) != 32:
                raise SecretKeyError("each WAYPOST_SECRET_KEY entry must be 32 bytes, base64")
        self._primary = keys[0]
        self._by_id = {_key_id(k): AESGCM(k) for k in keys}
        self._primary_id = _key_id(self._primary)

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        keys = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                keys.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            except (binascii.Error, ValueError) as exc:
                raise SecretKeyError("WAYPOST_SECRET_KEY is not valid base64") from exc
        return cls(keys)

    def encrypt(self, plaintext: str, context: str) -> str:
        """`context` binds the ciphertext to its row, so it cannot be moved to another."""
        nonce = os.urandom(12)
        sealed = self._by_id[self._primary_id].encrypt(nonce, plaintext.encode(), context.encode())
        blob = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{_PREFIX}:{self._primary_id}:{blob}"

    def is_current(self, stored: str) -> bool:
        """Whether the value is sealed with the first key (rotation leaves it alone)."""
        return stored.startswith(f"{_PREFIX}:{self._primary_id}:")

    def reseal(self, stored: str, context: str, *, what: str) -> str:
        """Opens a value with whichever key sealed it and seals it with the first key."""
        try:
            return self.encrypt(self.decrypt(stored, context), context)
        except (InvalidTag, SecretKeyError, ValueError):
            raise SecretKeyError(
                f"{what} cannot be opened with any key in WAYPOST_SECRET_KEY; "
                "list the key that sealed it (after the new one) and run this again"
            ) from None

    def decrypt(self, stored: str, context: str) -> str:
        prefix, key_id, blob = stored.split(":", 2)
        if prefix != _PREFIX or key_id not in self._by_id:
            raise SecretKeyError("no configured key can open this secret")
        raw = base64.urlsafe_b64decode(blob)
        return self._by_id[key_id].decrypt(raw[:12], raw[12:], context.encode()).decode()


def new_secret_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def load_or_create_key_file(path: Path) -> str:
    """The embedded set-up keeps its key beside the database, readable by the owner only."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_secret_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def new_api_token() -> str:
    return "wp_" + secrets.token_urlsafe(32)


def hash_api_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()
