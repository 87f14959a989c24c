"""Manifests: the canonical JSON object that describes one serialized model.

A **manifest** describes one serialized model: its pickle stream and out-of-band buffers
as lists of chunk digests. It holds no metadata, so identical model bytes always give an
identical manifest (and digest), whatever the model_id, and a rollback simply points at
an old manifest again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .canonical import canonical_json, parse_object
from .chunking import BUFFER_CHUNKING, STREAM_CHUNKING, ChunkParams
from .digest import Digest
from .errors import IntegrityError

MANIFEST_FORMAT = "cas-repo/manifest/1"


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
        obj = parse_object(data, "manifest")
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
