"""The pack format (pure): many entries in one blob, each verifiable by its own digest.

    b"CASPACK1" | nonce (16 random bytes) | stored entry bytes … | index | u32 entry count | b"CASPEND1"

The index has one 58-byte record per entry: digest (32), kind (1), codec (1), offset
(u64), stored size (u64), size (u64). An entry's digest is the BLAKE3 of its
*uncompressed* bytes, so an entry keeps its identity when a repack changes its codec or
its pack. The pack's own name is the BLAKE3 of all of its bytes.

The nonce makes every pack written a new name, even for entries some pack once held:
gc forgets a pack in the log and then deletes its file, and a writer storing the same
entries again afterwards must never publish under that name, or the delete could land
on its live pack. Readers find entries by the offsets in the index, so packs written
before the nonce (format 1 has none) read the same.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..digest import Digest
from ..errors import IntegrityError
from ..location import KIND_NAMES, Location

HEADER = b"CASPACK1"
FOOTER = b"CASPEND1"
NONCE_SIZE = 16
_ENTRY = struct.Struct("<32sBBQQQ")
_TAIL = struct.Struct("<I8s")
TAIL_SIZE = _TAIL.size

@dataclass(frozen=True, slots=True)
class PackEntry:
    """An entry as written: identity, kind, codec, and its stored (maybe compressed) bytes."""

    digest: Digest
    kind: int
    codec: int
    size: int
    stored: bytes | memoryview


def encode_pack(entries: list[PackEntry]) -> tuple[list[bytes | memoryview], list[tuple[int, int]]]:
    """Lay out a pack: returns its parts (to hash and write) and each entry's (offset, stored size)."""
    parts: list[bytes | memoryview] = [HEADER, os.urandom(NONCE_SIZE)]
    index = bytearray()
    offset = len(HEADER) + NONCE_SIZE
    spans = []
    for e in entries:
        n = len(e.stored)
        parts.append(e.stored)
        index += _ENTRY.pack(e.digest.raw, e.kind, e.codec, offset, n, e.size)
        spans.append((offset, n))
        offset += n
    parts.append(bytes(index))
    parts.append(_TAIL.pack(len(entries), FOOTER))
    return parts, spans


def pack_size(stored_bytes: int, entries: int) -> int:
    """The size of a pack holding ``entries`` entries of ``stored_bytes`` in all."""
    return len(HEADER) + NONCE_SIZE + stored_bytes + entries * _ENTRY.size + TAIL_SIZE


def index_span(pack_size: int, tail: bytes) -> tuple[int, int]:
    """From a pack's size and last bytes, the (offset, length) of its index."""
    if len(tail) != TAIL_SIZE:
        raise IntegrityError("a pack is too short to hold an index")
    count, magic = _TAIL.unpack(tail)
    if magic != FOOTER:
        raise IntegrityError("a pack does not end with its footer (truncated or not a pack)")
    length = count * _ENTRY.size
    start = pack_size - TAIL_SIZE - length
    if start < len(HEADER):
        raise IntegrityError("a pack's index claims more entries than the pack can hold")
    return start, length


def decode_index(pack: Digest, index: bytes, index_start: int) -> list[Location]:
    """The entries of a pack from its index bytes, bounds-checked against the index position."""
    if len(index) % _ENTRY.size:
        raise IntegrityError(f"pack {pack.hex} has a torn index")
    out = []
    for digest, kind, codec, offset, stored, size in _ENTRY.iter_unpack(index):
        if kind not in KIND_NAMES or offset < len(HEADER) or offset + stored > index_start:
            raise IntegrityError(f"pack {pack.hex} has an index entry out of bounds")
        out.append(Location(Digest(digest), kind, pack, offset, stored, size, codec))
    return out


def packs_of(locs: Sequence[Location]) -> tuple[tuple[str, int, int], ...]:
    """(pack, size, entries) of the packs holding ``locs`` — all written by one call."""
    packs: dict[Digest, list[int]] = {}
    for l in locs:
        acc = packs.setdefault(l.pack, [0, 0])
        acc[0] += l.stored_size
        acc[1] += 1
    return tuple((p.hex, pack_size(stored, n), n) for p, (stored, n) in packs.items())
