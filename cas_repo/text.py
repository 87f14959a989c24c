"""One value as the text a table cell shows (the CLI's tables and the web view's), and who made a change."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def cell_text(v: Any, missing: str = "-") -> str:
    """Floats to 4 significant digits, times to the second, mappings as ``k=v, …``."""
    if v is None:
        return missing
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, dict):
        return ", ".join(f"{k}={cell_text(x, missing)}" for k, x in v.items())
    return str(v)


def who(author: str | None, host: str | None = None) -> str:
    """``ada@host``: the person who made a commit and the machine; ``unknown`` before commits named one."""
    name = author or "unknown"
    return f"{name}@{host}" if host else name


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 pack``, ``3 packs`` (``plural``: when not ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
