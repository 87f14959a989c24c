"""Model ⇄ content: serialize and cut into chunks, or reassemble verified chunks (no I/O)."""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import serialization
from .chunking import BUFFER_CHUNKING, SMALL_BUFFER, STREAM_CHUNKING, cut
from .compression import SMALL_STREAM, compresses_well
from .digest import Digest, hash_bytes, hash_each
from .errors import IntegrityError
from .location import CHUNK, MANIFEST
from .manifest import ChunkRef, Manifest
from .objects.store import NewEntry

# Reassembly reads at most this many stored bytes at once, so a load's peak memory is
# the model plus one batch rather than twice the model.
READ_BATCH = 64 << 20
# Whether a large buffer's chunks are compressed is decided from this many of its first bytes.
COMPRESS_SAMPLE = 64 << 10
# Buffers from this size up are anonymous memory mappings rather than bytearrays.
MAPPED_BUFFER = 1 << 20
# ... and from this size up, backed by huge pages where the kernel offers them.
HUGE_BUFFER = 4 << 20


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


def _refs(pieces: list[memoryview], digests: list[Digest], compress: bool,
          entries: dict[Digest, NewEntry]) -> tuple[ChunkRef, ...]:
    refs = []
    for piece, d in zip(pieces, digests):
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
    cuts = [list(cut(ser.stream, STREAM_CHUNKING))]
    cuts += [list(cut(buf, BUFFER_CHUNKING if buf.nbytes >= SMALL_BUFFER else STREAM_CHUNKING))
             for buf in ser.buffers]
    # Every chunk of the model hashed in one call, so a model of many mid-sized arrays
    # is spread over threads as well as one big array.
    digests = hash_each([p for pieces in cuts for p in pieces])
    entries: dict[Digest, NewEntry] = {}
    start = len(cuts[0])
    # A small stream is stored as it is: zstd would cost more of its save and of every
    # load (~35 % of pickling it, measured on a LightGBM model) than the bytes it saves
    # are worth. A larger one decides from a sample of its middle, like a buffer.
    n = len(ser.stream)
    mid = max(0, n // 2 - BUFFER_CHUNKING.avg // 2)
    compress = n >= SMALL_STREAM and compresses_well(memoryview(ser.stream)[mid : mid + BUFFER_CHUNKING.avg])
    stream = _refs(cuts[0], digests[:start], compress, entries)
    buffers = []
    for buf, pieces in zip(ser.buffers, cuts[1:]):
        # Decide once per buffer from a sample: float arrays rarely compress, and trying
        # every chunk would cost more time than it saves bytes (zstd runs at ~0.3 GB/s
        # on such data here, so the sample is kept small).
        compress = compresses_well(buf[:COMPRESS_SAMPLE])
        buffers.append(_refs(pieces, digests[start : start + len(pieces)], compress, entries))
        start += len(pieces)
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
    buffers = [_new_buffer(sum(c.size for c in refs)) for refs in manifest.buffers]
    # One pass over every chunk of the model, so that batches span arrays: a model of
    # many mid-sized arrays is read in as few, as large, calls as one big array.
    _fill([(stream, manifest.stream), *zip(buffers, manifest.buffers)], read, read_into)
    return serialization.loads(stream, buffers)


def _new_buffer(size: int) -> bytearray | mmap.mmap:
    """A writable buffer for an array (arrays rebuilt over it stay writable, as after pickle.load).

    Large ones are anonymous mappings backed by transparent huge pages where the kernel
    offers them (``madvise``): ``bytearray(n)`` zero-fills every page from Python first, a
    whole extra pass over memory, and faulting in 4 KiB pages costs, in a VM, as much as
    the read itself (measured here: copying 512 MiB into a new mapping ran at 2.0 GB/s
    with 4 KiB pages pre-faulted, 5.9 GB/s with huge pages). Without huge pages the
    kernel pre-faults the mapping in bulk (``MAP_POPULATE``).
    """
    if size < MAPPED_BUFFER:
        return bytearray(size)
    huge = getattr(mmap, "MADV_HUGEPAGE", None)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if huge is not None and size >= HUGE_BUFFER:
        buf = mmap.mmap(-1, size, flags=flags)
        try:
            buf.madvise(huge)
            return buf
        except OSError:  # no transparent huge pages in this kernel: pre-fault instead
            buf.close()
    return mmap.mmap(-1, size, flags=flags | getattr(mmap, "MAP_POPULATE", 0))


def _fill(targets: Sequence[tuple[bytearray | mmap.mmap, Sequence[ChunkRef]]], read: Callable,
          read_into: Callable | None) -> None:
    """Fill each target with its chunks, in batches of about READ_BATCH stored bytes."""
    batch: list[tuple[ChunkRef, memoryview]] = []
    size = 0

    def flush() -> None:
        if read_into is not None:
            read_into([r.digest for r, _ in batch], [v for _, v in batch])
            return
        for (ref, view), data in zip(batch, read([r.digest for r, _ in batch])):
            if len(data) != ref.size:
                raise IntegrityError("a chunk's size differs from its manifest entry",
                                     expected=ref.digest.hex)
            view[:] = data

    for target, refs in targets:
        view = memoryview(target)
        pos = 0
        for ref in refs:
            batch.append((ref, view[pos : pos + ref.size]))
            pos += ref.size
            size += ref.size
            if size >= READ_BATCH:
                flush()
                batch, size = [], 0
    if batch:
        flush()
