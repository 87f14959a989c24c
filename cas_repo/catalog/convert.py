"""Value conversions shared by the catalog's modules."""

from __future__ import annotations

from datetime import UTC, datetime


def naive_utc(dt: datetime) -> datetime:
    """DuckDB TIMESTAMP columns hold naive UTC."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.astimezone(UTC).replace(tzinfo=None)
