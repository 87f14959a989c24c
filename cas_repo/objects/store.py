"""ObjectStore: writes entries into packs and reads them back, verified, from any backend."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .. import compression
from ..digest import PARALLEL_MIN, Digest, hash_bytes, hash_many
from ..errors import IntegrityError, StoreError
from .backend import ObjectBackend, ObjectInfo
from .keys import PACKS, pack_key, parse_pack_key
from .local import LocalBackend
from .pack import TAIL_SIZE, Location, PackEntry, decode_index, encode_pack, index_span

# A pack is one PUT and one fsync: large enough that a save of a 300 KB model is a
# single pack, small enough that an object store can take it in one request.
PACK_TARGET = 64 << 20
# A pack up to this size is joined into one buffer before it is hashed and written.
_JOIN_MAX = 4 << 20
# Ranges of one pack closer than this are read with one call.
_COALESCE_GAP = 64 << 10
# A load reads adjacent raw entries into their arrays with one call of at most this many
# bytes, then verifies them (see read_into).
_READ_RUN = 8 << 20


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to store: digest of ``data``, its kind, and whether to try compressing it."""

    digest: Digest
    kind: int
    data: bytes | memoryview
    compress: bool = True


_LOCAL_OPTIONS = frozenset({"fsync", "direct_io"})  # LocalBackend's keyword arguments


def open_backend(url: str | os.PathLike[str], **options: Any) -> ObjectBackend:
    """A backend for ``url``: a folder path (or ``file://``) or ``s3://bucket/prefix``."""
    text = os.fspath(url)
    if text.startswith("s3://"):
        try:
            from .s3 import S3Backend
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise StoreError(f"s3:// stores need obstore: pip install obstore ({exc})") from exc
        return S3Backend.from_url(text, **options)
    if "://" in text and not text.startswith("file://"):
        raise StoreError(f"unsupported store URL {text!r}: use a folder path or s3://bucket/prefix")
    unknown = set(options) - _LOCAL_OPTIONS
    if unknown:
        raise StoreError(f"unknown option(s) {sorted(unknown)} for the folder store {text}; known: "
                         f"{sorted(_LOCAL_OPTIONS)} (the others are for s3:// stores)")
    return LocalBackend(text.removeprefix("file://"), **options)


class ObjectStore:
    """Packs of content-addressed entries over an :class:`ObjectBackend`."""

    def __init__(self, backend: ObjectBackend, *, pack_target: int | None = None) -> None:
        self.backend = backend
        self.pack_target = pack_target or backend.preferred_pack_size or PACK_TARGET

    # -- writing ---------------------------------------------------------------------

    def write(self, entries: Iterable[NewEntry]) -> list[Location]:
        """Store ``entries`` in as few packs as the target size allows; returns their locations.

        Each pack is published atomically; entries are stored once even if listed twice.
        Every pack gets a new name (its nonce), never one gc has forgotten and may be
        deleting right now. A save of several packs is a pipeline: one thread publishes
        a pack while the caller compresses, lays out and hashes the next one (the disk
        and BLAKE3 both release the GIL), at most one pack ahead so that memory stays
        bounded. Returns only once every pack is published.
        """
        locations: list[Location] = []
        batch: list[PackEntry] = []
        size = 0
        seen: set[Digest] = set()
        publisher: ThreadPoolExecutor | None = None
        pending: Future[bool] | None = None
        try:
            for e in entries:
                if e.digest in seen:
                    continue
                seen.add(e.digest)
                codec, stored = compression.maybe_compress(e.data) if e.compress else (compression.RAW, e.data)
                batch.append(PackEntry(e.digest, e.kind, codec, len(e.data), stored))
                size += len(stored)
                if size >= self.pack_target:
                    key, parts, locs = self._lay_out(batch)
                    if pending is not None:
                        pending.result()
                    if publisher is None:
                        publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cas-pack")
                    pending = publisher.submit(self.backend.put, key, parts)
                    locations += locs
                    batch, size = [], 0
            if batch:
                key, parts, locs = self._lay_out(batch)
                if pending is not None:
                    pending.result()
                    pending = None
                self.backend.put(key, parts)
                locations += locs
            if pending is not None:
                pending.result()
        finally:
            if publisher is not None:
                # A failure above leaves the pack in flight to finish (or fail) on its own:
                # an unreferenced pack, which gc collects, as after a crash.
                publisher.shutdown(wait=True)
        return locations

    def _lay_out(self, batch: list[PackEntry]) -> tuple[str, list[bytes | memoryview], list[Location]]:
        """A pack of ``batch``: its key (the hash of all of its bytes), parts and locations."""
        parts, spans = encode_pack(batch)
        if sum(len(p) for p in parts) <= _JOIN_MAX:
            # One buffer: BLAKE3 hashes it in one pass (~2× faster than in ~10 KiB pieces)
            # and the file gets one write instead of one per entry.
            parts = [b"".join(parts)]
        name = hash_many(parts)
        return pack_key(name), parts, [
            Location(e.digest, e.kind, name, off, n, e.size, e.codec)
            for e, (off, n) in zip(batch, spans)
        ]

    # -- reading ---------------------------------------------------------------------

    def read(self, loc: Location) -> bytes | memoryview:
        """The verified, uncompressed bytes of one entry."""
        return self.read_many([loc])[0]

    def read_many(self, locs: Sequence[Location]) -> list[bytes | memoryview]:
        """Verified bytes of each location, in order; ranges of one pack are read together.

        Raises:
            IntegrityError: an entry's bytes do not hash to its digest.
            ObjectNotFoundError: a pack is missing.
        """
        out: list[bytes | memoryview | None] = [None] * len(locs)
        by_pack: dict[Digest, list[int]] = {}
        for i, loc in enumerate(locs):
            by_pack.setdefault(loc.pack, []).append(i)
        items = list(by_pack.items())
        workers = min(self.backend.read_concurrency, len(items))
        if workers > 1:
            # Packs of a deduplicated history are many small reads: overlap their round trips.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cas-read") as pool:
                for fut in [pool.submit(self._read_pack, p, idxs, locs, out) for p, idxs in items]:
                    fut.result()
        else:
            for pack, idxs in items:
                self._read_pack(pack, idxs, locs, out)
        return out  # type: ignore[return-value]  # no None left: _read_pack fills each slot or raises

    def _read_pack(self, pack: Digest, idxs: list[int], locs: Sequence[Location],
                   out: list[bytes | memoryview | None]) -> None:
        """Read and verify the entries ``idxs`` of ``locs`` that live in ``pack`` into ``out``."""
        idxs.sort(key=lambda i: locs[i].offset)
        groups: list[tuple[int, int, list[int]]] = []
        for i in idxs:
            loc = locs[i]
            end = loc.offset + loc.stored_size
            if groups and loc.offset - groups[-1][1] <= _COALESCE_GAP:
                start, prev_end, members = groups[-1]
                groups[-1] = (start, max(prev_end, end), [*members, i])
            else:
                groups.append((loc.offset, end, [i]))
        blobs = self.backend.read_ranges(pack_key(pack), [(s, e - s) for s, e, _ in groups])
        for (start, _end, members), blob in zip(groups, blobs):
            view = memoryview(blob)
            for i in members:
                loc = locs[i]
                stored = view[loc.offset - start : loc.offset - start + loc.stored_size]
                if len(stored) != loc.stored_size:
                    raise IntegrityError(
                        f"pack {pack.hex} is truncated: an entry at offset {loc.offset} has "
                        f"{len(stored)} of its {loc.stored_size} bytes (actual: digest of what is left)",
                        expected=loc.digest.hex, actual=hash_bytes(stored).hex)
                out[i] = self._verify(loc, stored)

    def read_into(self, locs: Sequence[Location], targets: Sequence[memoryview]) -> None:
        """Fill each target with the verified bytes of its location (``len(target) == loc.size``).

        Uncompressed entries are read straight into their targets (adjacent ones with one
        call) and hashed in place, so each byte is copied once instead of twice; the
        others go through :meth:`read_many`. A target may hold unverified bytes until this
        returns: use none of them if it raises.

        Raises:
            IntegrityError: an entry's bytes do not hash to its digest, or its size is wrong.
            ObjectNotFoundError: a pack is missing.
        """
        direct: dict[Digest, list[int]] = {}
        rest = []
        for i, (loc, target) in enumerate(zip(locs, targets)):
            if loc.codec == compression.RAW and loc.stored_size == loc.size == len(target):
                direct.setdefault(loc.pack, []).append(i)
            else:
                rest.append(i)
        for i, data in zip(rest, self.read_many([locs[i] for i in rest])):
            if len(data) != len(targets[i]):
                raise IntegrityError("a chunk's size differs from its manifest entry", expected=locs[i].digest.hex)
            targets[i][:] = data
        # Runs of adjacent entries, each read with one call and then verified; cut at
        # _READ_RUN bytes so that a large load spreads over a few threads, each reading
        # (page faults and copy in the kernel) and hashing its own runs.
        runs: list[tuple[Digest, int, list[int]]] = []
        run_bytes = 0
        for pack, idxs in direct.items():
            idxs.sort(key=lambda i: locs[i].offset)
            end = -1
            for i in idxs:
                loc = locs[i]
                run = runs[-1] if runs else None
                if run is not None and run[0] == pack and loc.offset == end and run_bytes < _READ_RUN:
                    run[2].append(i)
                    run_bytes += loc.stored_size
                else:
                    runs.append((pack, loc.offset, [i]))
                    run_bytes = loc.stored_size
                end = loc.offset + loc.stored_size

        def fill(run: tuple[Digest, int, list[int]]) -> None:
            pack, offset, members = run
            n = self.backend.read_ranges_into(pack_key(pack), [(offset, [targets[i] for i in members])])[0]
            for i in members:
                if n < len(targets[i]):
                    raise IntegrityError(f"pack {pack.hex} is shorter than its index says (truncated)",
                                         expected=locs[i].digest.hex)
                n -= len(targets[i])
                self._check(locs[i], targets[i])

        spans: dict[Digest, tuple[int, int]] = {}
        for pack, offset, members in runs:
            end = offset + sum(locs[i].stored_size for i in members)
            lo, hi = spans.get(pack, (offset, end))
            spans[pack] = (min(lo, offset), max(hi, end))
        for pack, (lo, hi) in spans.items():
            if hi - lo >= _READ_RUN:
                self.backend.prefetch(pack_key(pack), lo, hi - lo)
        workers = min(4, os.cpu_count() or 1, len(runs))
        if workers > 1 and sum(locs[i].size for _p, _o, m in runs for i in m) >= PARALLEL_MIN:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cas-read") as pool:
                for _ in pool.map(fill, runs):
                    pass
        else:
            for run in runs:
                fill(run)

    @staticmethod
    def _verify(loc: Location, stored: memoryview) -> bytes | memoryview:
        try:
            data = compression.decompress(loc.codec, stored, loc.size)
        except IntegrityError as exc:
            raise IntegrityError(f"{exc.message} in pack {loc.pack.hex[:16]}… "
                                 "(actual: digest of the stored bytes)",
                                 expected=loc.digest.hex, actual=hash_bytes(stored).hex) from exc
        ObjectStore._check(loc, data)
        return data

    @staticmethod
    def _check(loc: Location, data: bytes | memoryview) -> None:
        actual = hash_bytes(data)
        if actual != loc.digest:
            raise IntegrityError(
                f"stored bytes in pack {loc.pack.hex[:16]}… do not match their digest",
                expected=loc.digest.hex,
                actual=actual.hex,
            )

    # -- packs -----------------------------------------------------------------------

    def pack_index(self, pack: Digest) -> list[Location]:
        """Every entry of ``pack``, read from its own index (no catalog involved)."""
        key = pack_key(pack)
        size = self.backend.stat(key).size
        if size < TAIL_SIZE + 8:
            raise IntegrityError(f"pack {pack.hex} is truncated ({size} bytes)")
        tail = self.backend.read_range(key, size - TAIL_SIZE, TAIL_SIZE)
        start, length = index_span(size, tail)
        index = self.backend.read_range(key, start, length) if length else b""
        return decode_index(pack, index, start)

    def list_packs(self) -> Iterator[tuple[Digest, ObjectInfo]]:
        """Every pack in the store with its size and mtime, streamed."""
        for info in self.backend.list(PACKS + "/"):
            digest = parse_pack_key(info.key)
            if digest is not None:
                yield digest, info

    def verify_pack(self, pack: Digest) -> Digest:
        """Re-hash a whole pack; returns the digest of its bytes (equal to ``pack`` if intact)."""
        return hash_bytes(self.backend.read(pack_key(pack)))

    def delete_pack(self, pack: Digest) -> None:
        self.backend.delete(pack_key(pack))

    def close(self) -> None:
        self.backend.close()
