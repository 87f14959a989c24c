"""Model ⇄ content: serialize and cut into chunks, or reassemble verified chunks (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import serialization
from .chunking import BUFFER_CHUNKING, SMALL_BUFFER, STREAM_CHUNKING, cut
from .compression import compresses_well
from .digest import Digest, hash_bytes
from .errors import IntegrityError
from .location import CHUNK, MANIFEST
from .manifest import ChunkRef, Manifest
from .objects.store import NewEntry

# Reassembly reads at most this many stored bytes at once, so a load's peak memory is
# the model plus one batch rather than twice the model.
READ_BATCH = 64 << 20


@dataclass(frozen=True, slots=True)
class Content:
    """A serialized model ready to store: its manifest and the distinct entries it needs."""

    manifest: Manifest
    manifest_bytes: bytes
    digest: Digest
    entries: dict[Digest, NewEntry]

    @property
    def manifest_entry(self) -> NewEntry:
        return NewEntry(self.digest, MANIFEST, self.manifest_bytes, compress=False)


def _refs(data: memoryview | bytes, params: Any, compress: bool,
          entries: dict[Digest, NewEntry]) -> tuple[ChunkRef, ...]:
    refs = []
    for piece in cut(data, params):
        d = hash_bytes(piece)
        refs.append(ChunkRef(d, len(piece)))
        if d not in entries:
            entries[d] = NewEntry(d, CHUNK, piece, compress)
    return tuple(refs)


def to_content(model: Any) -> Content:
    """Serialize ``model`` and cut it into content-addressed chunks.

    Raises:
        SerializationError: the model cannot be pickled.
    """
    ser = serialization.dumps(model)
    entries: dict[Digest, NewEntry] = {}
    stream = _refs(ser.stream, STREAM_CHUNKING, True, entries)
    buffers = []
    for buf in ser.buffers:
        params = BUFFER_CHUNKING if buf.nbytes >= SMALL_BUFFER else STREAM_CHUNKING
        # Decide once per buffer from a sample: float arrays rarely compress, and trying
        # every chunk would cost more time than it saves bytes.
        compress = compresses_well(buf[: BUFFER_CHUNKING.avg])
        buffers.append(_refs(buf, params, compress, entries))
    manifest = Manifest(serialization.SERIALIZER, stream, tuple(buffers))
    mbytes = manifest.to_bytes()
    return Content(manifest, mbytes, hash_bytes(mbytes), entries)


def from_content(
    manifest: Manifest,
    read: Callable[[Sequence[Digest]], list[bytes | memoryview]],
) -> Any:
    """Rebuild the model of ``manifest``; ``read`` returns verified bytes for digests.

    Every chunk is verified (by ``read``) before the unpickler sees a byte.
    """
    if manifest.serializer != serialization.SERIALIZER:
        raise IntegrityError(f"unknown serializer {manifest.serializer!r}; upgrade cas-repo")
    stream = bytearray(sum(c.size for c in manifest.stream))
    _fill(stream, manifest.stream, read)
    buffers = []
    for refs in manifest.buffers:
        # bytearray, not bytes: arrays rebuilt over it stay writable, as after pickle.load.
        buf = bytearray(sum(c.size for c in refs))
        _fill(buf, refs, read)
        buffers.append(buf)
    return serialization.loads(stream, buffers)


def _fill(target: bytearray, refs: Sequence[ChunkRef], read: Callable) -> None:
    pos = 0
    batch: list[ChunkRef] = []
    size = 0

    def flush() -> None:
        nonlocal pos
        for ref, data in zip(batch, read([r.digest for r in batch])):
            if len(data) != ref.size:
                raise IntegrityError("a chunk's size differs from its manifest entry",
                                     expected=ref.digest.hex)
            target[pos : pos + ref.size] = data
            pos += ref.size

    for ref in refs:
        batch.append(ref)
        size += ref.size
        if size >= READ_BATCH:
            flush()
            batch, size = [], 0
    if batch:
        flush()
