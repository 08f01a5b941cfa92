"""Field rules shared by every feature's wire schemas: text both databases can keep,
names, and the URLs Waypost will send to."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator

MAX_URL_LENGTH = 2048


def storable(value: str) -> str:
    """Text both databases can keep: no NUL (PostgreSQL refuses it) and no lone
    surrogate (not encodable as UTF-8)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def storable_json(value: Any) -> Any:
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable_json(item)
    elif isinstance(value, list):
        for item in value:
            storable_json(item)
    return value


# Unicode's control characters (category Cc) are exactly these two ranges; `\s` is
# what str.isspace() calls white space. A pattern scans in C, not character by character.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def _name(value: str) -> str:
    value = storable(value).strip()
    if not 1 <= len(value) <= 255:
        raise ValueError("must be 1 to 255 characters after trimming spaces")
    if has_control(value):
        raise ValueError("must not contain control characters")
    return value


def _http_url(value: str) -> str:
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    storable(value)
    if _SPACE_OR_CONTROL.search(value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password; use an auth credential")
    return value


def https_refusal(url: str | None, environment_flag: str) -> str | None:
    """Why a URL may not be used in this environment (Redox: "Production and staging
    applications must use HTTPS"), or None when it may."""
    if url is None or environment_flag == "Development" or urlsplit(url).scheme == "https":
        return None
    return f"must use https:// in a {environment_flag} environment"


# A display name: 1 to 255 characters after trimming, one line.
Name = Annotated[str, AfterValidator(_name)]
# An absolute http(s) URL of at most 2048 characters, without credentials in it.
HttpUrl = Annotated[str, AfterValidator(_http_url)]
StorableJson = AfterValidator(storable_json)
