"""Waypost: a self-hosted, Redox-compatible Platform API for destinations."""

__version__ = "0.1.0"
