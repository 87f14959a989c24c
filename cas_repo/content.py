"""Model ⇄ content: serialize and cut into chunks, or reassemble verified chunks (no I/O)."""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import serialization
from .chunking import BUFFER_CHUNKING, SMALL_BUFFER, STREAM_CHUNKING, cut
from .compression import SMALL_STREAM, compresses_well
from .digest import Digest, hash_bytes
from .errors import IntegrityError
from .location import CHUNK, MANIFEST
from .manifest import ChunkRef, Manifest
from .objects.store import NewEntry

# Reassembly reads at most this many stored bytes at once, so a load's peak memory is
# the model plus one batch rather than twice the model.
READ_BATCH = 64 << 20
# Buffers from this size up are anonymous memory mappings rather than bytearrays.
MAPPED_BUFFER = 1 << 20


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
    # A small stream is stored as it is: zstd would cost more of its save and of every
    # load (~35 % of pickling it, measured on a LightGBM model) than the bytes it saves
    # are worth. A larger one decides from a sample of its middle, like a buffer.
    n = len(ser.stream)
    mid = max(0, n // 2 - BUFFER_CHUNKING.avg // 2)
    compress = n >= SMALL_STREAM and compresses_well(memoryview(ser.stream)[mid : mid + BUFFER_CHUNKING.avg])
    stream = _refs(ser.stream, STREAM_CHUNKING, compress, entries)
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
    read_into: Callable[[Sequence[Digest], Sequence[memoryview]], None] | None = None,
) -> Any:
    """Rebuild the model of ``manifest``; ``read`` returns verified bytes for digests.

    ``read_into``, when given, is used instead: it fills views of the final buffers with
    verified bytes, saving a copy of every byte. Every chunk is verified (by ``read`` or
    ``read_into``) before the unpickler sees a byte.
    """
    if manifest.serializer != serialization.SERIALIZER:
        raise IntegrityError(f"unknown serializer {manifest.serializer!r}; upgrade cas-repo")
    stream = bytearray(sum(c.size for c in manifest.stream))
    _fill(stream, manifest.stream, read, read_into)
    buffers = []
    for refs in manifest.buffers:
        buf = _new_buffer(sum(c.size for c in refs))
        _fill(buf, refs, read, read_into)
        buffers.append(buf)
    return serialization.loads(stream, buffers)


def _new_buffer(size: int) -> bytearray | mmap.mmap:
    """A writable buffer for an array (arrays rebuilt over it stay writable, as after pickle.load).

    Large ones are anonymous mappings the kernel pre-faults in bulk: ``bytearray(n)``
    zero-fills every page from Python first, a whole extra pass over memory that, in a
    VM, costs as much as the read itself.
    """
    if size < MAPPED_BUFFER:
        return bytearray(size)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(-1, size, flags=flags)


def _fill(target: bytearray | mmap.mmap, refs: Sequence[ChunkRef], read: Callable,
          read_into: Callable | None) -> None:
    pos = 0
    batch: list[ChunkRef] = []
    size = 0
    view = memoryview(target)

    def flush() -> None:
        nonlocal pos
        if read_into is not None:
            views = []
            for ref in batch:
                views.append(view[pos : pos + ref.size])
                pos += ref.size
            read_into([r.digest for r in batch], views)
            return
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
