"""Manifests and event records: the canonical JSON objects that make the store self-describing.

A **manifest** describes one serialized model: its pickle stream and out-of-band buffers
as lists of chunk digests. It holds no metadata, so identical model bytes always give an
identical manifest (and digest), whatever the model_id, and a rollback simply points at
an old manifest again.

An **event record** is what the catalog's event log is built from: one per save,
rollback, delete, undelete or tag change, carrying the version's full metadata. Records
are stored beside the chunks, so a lost catalog is rebuilt by replaying them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .chunking import BUFFER_CHUNKING, STREAM_CHUNKING, ChunkParams
from .digest import Digest
from .errors import IntegrityError

MANIFEST_FORMAT = "cas-repo/manifest/1"
RECORD_FORMAT = "cas-repo/record/1"
# retire/restore: a retention policy's version tombstone and its undo; purge: gc freed the
# content of a version (its history stays).
EVENT_KINDS = ("save", "rollback", "delete", "undelete", "tag", "retire", "restore", "purge")


def canonical_json(obj: Any) -> bytes:
    """The one byte form of ``obj``: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _parse_json(data: bytes | memoryview, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(bytes(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"the stored {what} is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise IntegrityError(f"the stored {what} is not a JSON object")
    return obj


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of a stream: its digest and uncompressed size."""

    digest: Digest
    size: int

    def to_json(self) -> list[Any]:
        return [self.digest.hex, self.size]

    @classmethod
    def from_json(cls, item: Any) -> ChunkRef:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], int) and item[1] >= 0):
            raise IntegrityError(f"malformed chunk reference in a manifest: {item!r:.80}")
        return cls(Digest.from_hex(item[0]), item[1])


@dataclass(frozen=True, slots=True)
class Manifest:
    """A serialized model as chunk lists: the pickle stream, then each buffer."""

    serializer: str
    stream: tuple[ChunkRef, ...]
    buffers: tuple[tuple[ChunkRef, ...], ...] = ()
    stream_chunking: ChunkParams = STREAM_CHUNKING
    buffer_chunking: ChunkParams = BUFFER_CHUNKING

    @property
    def size(self) -> int:
        """Logical bytes: what a full copy of the serialized model takes."""
        return sum(c.size for c in self.stream) + sum(c.size for b in self.buffers for c in b)

    def chunks(self) -> list[ChunkRef]:
        """Every chunk reference in order (a digest may repeat)."""
        out = list(self.stream)
        for b in self.buffers:
            out.extend(b)
        return out

    def to_bytes(self) -> bytes:
        p = lambda c: [c.avg, c.min, c.max]  # noqa: E731
        return canonical_json({
            "format": MANIFEST_FORMAT,
            "serializer": self.serializer,
            "size": self.size,
            "chunking": {"stream": p(self.stream_chunking), "buffer": p(self.buffer_chunking)},
            "stream": [c.to_json() for c in self.stream],
            "buffers": [[c.to_json() for c in b] for b in self.buffers],
        })

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Manifest:
        obj = _parse_json(data, "manifest")
        if obj.get("format") != MANIFEST_FORMAT:
            raise IntegrityError(f"unknown manifest format {obj.get('format')!r}; upgrade cas-repo")
        try:
            ch = obj["chunking"]
            m = cls(
                serializer=obj["serializer"],
                stream=tuple(ChunkRef.from_json(c) for c in obj["stream"]),
                buffers=tuple(tuple(ChunkRef.from_json(c) for c in b) for b in obj["buffers"]),
                stream_chunking=ChunkParams(*ch["stream"]),
                buffer_chunking=ChunkParams(*ch["buffer"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed manifest ({exc!r})") from exc
        if m.size != obj.get("size"):
            raise IntegrityError("a manifest's size does not match its chunks")
        return m


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a model's history, as stored in the object store.

    ``seq`` numbers a model's events 1, 2, 3…; ``version`` is the version a save or
    rollback created, or the head version a delete/undelete/tag applied to.
    """

    kind: str
    model_id: str
    seq: int
    version: int
    at: datetime
    manifest: Digest | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parents: tuple[str, ...] = ()
    rollback_of: int | None = None
    tags: dict[str, str | None] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return canonical_json({
            "format": RECORD_FORMAT,
            "kind": self.kind,
            "model_id": self.model_id,
            "seq": self.seq,
            "version": self.version,
            "at": self.at.isoformat(),
            "manifest": self.manifest.hex if self.manifest else None,
            "metadata": self.metadata,
            "parents": list(self.parents),
            "rollback_of": self.rollback_of,
            "tags": self.tags,
        })

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> EventRecord:
        obj = _parse_json(data, "event record")
        if obj.get("format") != RECORD_FORMAT:
            raise IntegrityError(f"unknown event record format {obj.get('format')!r}")
        try:
            rec = cls(
                kind=obj["kind"],
                model_id=obj["model_id"],
                seq=int(obj["seq"]),
                version=int(obj["version"]),
                at=datetime.fromisoformat(obj["at"]),
                manifest=Digest.from_hex(obj["manifest"]) if obj["manifest"] else None,
                metadata=dict(obj["metadata"]),
                parents=tuple(obj["parents"]),
                rollback_of=obj["rollback_of"],
                tags=dict(obj["tags"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed event record ({exc!r})") from exc
        if rec.kind not in EVENT_KINDS:
            raise IntegrityError(f"unknown event kind {rec.kind!r}")
        return rec
