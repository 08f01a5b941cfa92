"""Enumerations that several features and their wire models share (Redox's own values)."""

from __future__ import annotations

from enum import StrEnum


class EnvironmentFlag(StrEnum):
    DEVELOPMENT = "Development"
    STAGING = "Staging"
    PRODUCTION = "Production"


class OrgRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class EnvRole(StrEnum):
    ENGINEER = "engineer"
    SUPPORT = "support"
    VIEWER = "viewer"
