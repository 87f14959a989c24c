"""Value conversions shared by the catalog's modules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..digest import Digest
from ..location import Location

# The columns of ``objects`` (aliased ``o``) that :func:`location_of` reads, in its order.
LOCATION_COLS = 'o.digest, o.kind, o.pack, o."offset", o.stored_size, o.size, o.codec'


def naive_utc(dt: datetime) -> datetime:
    """DuckDB TIMESTAMP columns hold naive UTC."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.astimezone(UTC).replace(tzinfo=None)


def aware_utc(dt: datetime) -> datetime:
    """A TIMESTAMP column's naive UTC value as an aware datetime (the inverse of :func:`naive_utc`)."""
    return dt.replace(tzinfo=UTC)


def location_of(row: Sequence[Any]) -> Location:
    """A Location from a row of :data:`LOCATION_COLS`."""
    return Location(Digest.from_hex(row[0]), row[1], Digest.from_hex(row[2]), row[3], row[4], row[5], row[6])
