"""Timestamps: aware UTC everywhere, written one way (RFC 3339 with ``Z``) in every output."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.base import utcnow

__all__ = ["iso_z", "utc", "utcnow"]


def iso_z(value: datetime | None) -> str | None:
    """``2026-11-25T10:00:00.123456Z`` (None stays None): API, CLI, records and read-backs."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def utc(value: datetime) -> datetime:
    """A naive datetime read as UTC (command-line input); an aware one converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
