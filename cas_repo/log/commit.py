"""A log commit: the canonical bytes stored at one position of the log (pure, no I/O).

    {"format": "cas-repo/commit/1", "position": N, "writer": "<host>/<pid>/<token>", "ops": [...]}

``writer`` makes every commit's bytes unique, so two writers never publish identical
objects (an object store's ETag is the MD5 of the bytes; a compare-and-swap over equal
bytes could not tell two writers apart). ``position`` binds a commit to its key: a commit
copied to another position (a replay of an old event, hiding the one it overwrote) is
refused, and a keyed store's seal, over the whole commit, covers the position too.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from ..canonical import canonical_json
from ..errors import IntegrityError
from .ops import Op, event_id_of, op_from_json, op_to_json

COMMIT_FORMAT = "cas-repo/commit/1"


def new_writer_id() -> str:
    """``host/pid/token``: who wrote a commit, and unique to this process."""
    host = socket.gethostname()[:64] or "host"
    return f"{host}/{os.getpid()}/{secrets.token_hex(6)}"


def with_event_id(op_json: dict[str, Any]) -> dict[str, Any]:
    """``op_json`` with its event id (JSON key ``record``) filled in: save, event and mark operations."""
    if op_json["op"] in ("save", "event", "mark"):
        op_json = dict(op_json, record=event_id_of(op_json))
    return op_json


@dataclass(frozen=True, slots=True)
class Commit:
    """The operations committed at one log position, and who committed them."""

    writer: str
    ops: tuple[Op, ...]
    position: int

    def to_bytes(self) -> bytes:
        return canonical_json({"format": COMMIT_FORMAT, "position": self.position, "writer": self.writer,
                               "ops": [with_event_id(op_to_json(o)) for o in self.ops]})

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Commit:
        """Parse a commit.

        Raises:
            IntegrityError: not a commit this version of cas-repo understands.
        """
        try:
            obj = json.loads(bytes(data))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"a log commit is not valid JSON ({exc})") from exc
        if not isinstance(obj, dict) or obj.get("format") != COMMIT_FORMAT:
            fmt = obj.get("format") if isinstance(obj, dict) else None
            raise IntegrityError(f"unknown log commit format {fmt!r:.60}; upgrade cas-repo")
        ops = obj.get("ops")
        if not isinstance(ops, list) or not isinstance(obj.get("writer"), str):
            raise IntegrityError("a log commit has no list of operations or no writer")
        if not isinstance(obj.get("position"), int):
            raise IntegrityError("a log commit does not say its position")
        return cls(obj["writer"], tuple(op_from_json(o) for o in ops), obj["position"])
