"""Canonical JSON: the one byte form of manifests, commits, checkpoints and seals (pure)."""

from __future__ import annotations

import json
from typing import Any

from .errors import IntegrityError


def canonical_json(obj: Any) -> bytes:
    """The one byte form of ``obj``: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def parse_object(data: bytes | memoryview, what: str) -> dict[str, Any]:
    """``data`` as a JSON object, or an IntegrityError naming ``what`` it should have been."""
    try:
        obj = json.loads(bytes(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"the stored {what} is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise IntegrityError(f"the stored {what} is not a JSON object")
    return obj
