"""Digests: the identity of every stored thing (BLAKE3-256 lives here and only here)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3 as _blake3

from .errors import InvalidDigestError

ALGORITHM = "blake3"
DIGEST_SIZE = 32
_HEX = re.compile(r"[0-9a-f]{64}")

# Multi-threaded hashing only pays for large inputs; below this one thread is faster.
_THREADED_MIN = 8 << 20
# Many pieces adding up to this much are hashed by a few threads at once (BLAKE3 releases
# the GIL): measured here, 256 KiB chunks hash at ~4.5 GB/s on one thread and ~9 GB/s on
# two when each thread takes a run of consecutive pieces (one task per piece: ~5.6 GB/s).
PARALLEL_MIN = 8 << 20
_PARALLEL_RUN = 64


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A validated BLAKE3-256 digest.

    Construct from hex with :meth:`from_hex` or from raw bytes with :meth:`from_bytes`;
    the only way a path or key is ever built is from one of these.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != DIGEST_SIZE:
            raise InvalidDigestError(f"a {ALGORITHM} digest is {DIGEST_SIZE} bytes, got {self.raw!r:.80}")

    @classmethod
    def from_hex(cls, text: str) -> Digest:
        """Parse a 64-char lowercase hex digest, refusing anything else."""
        if not isinstance(text, str) or not _HEX.fullmatch(text):
            raise InvalidDigestError(f"not a {ALGORITHM} hex digest: {str(text)[:80]!r}")
        return cls(bytes.fromhex(text))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Digest:
        return cls(bytes(raw))

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def algorithm(self) -> str:
        return ALGORITHM

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        return f"Digest({ALGORITHM}:{self.hex[:16]}…)"


def _blake3_hasher(key: bytes | None, *, threaded: bool = False) -> _blake3.blake3:
    # `is not None`, not truthiness: an empty key is a wrong key, not a request for unkeyed mode.
    threads = _blake3.blake3.AUTO if threaded else 1
    if key is None:
        return _blake3.blake3(max_threads=threads)
    if len(key) != 32:
        raise InvalidDigestError("a keyed BLAKE3 digest needs a 32-byte key")
    return _blake3.blake3(key=key, max_threads=threads)


def hash_bytes(data: bytes | bytearray | memoryview, *, key: bytes | None = None) -> Digest:
    """BLAKE3-256 of ``data`` (keyed mode when ``key`` is given)."""
    hasher = _blake3_hasher(key, threaded=len(data) >= _THREADED_MIN)
    hasher.update(data)
    return Digest(hasher.digest())


def hash_each(pieces: Sequence[bytes | memoryview]) -> list[Digest]:
    """The BLAKE3-256 of every piece, in order; large inputs on up to 4 threads."""
    workers = min(4, os.cpu_count() or 1)
    if workers < 2 or sum(len(p) for p in pieces) < PARALLEL_MIN:
        return [hash_bytes(p) for p in pieces]

    def run(start: int) -> list[Digest]:
        return [hash_bytes(p) for p in pieces[start : start + _PARALLEL_RUN]]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cas-hash") as pool:
        return [d for run_digests in pool.map(run, range(0, len(pieces), _PARALLEL_RUN)) for d in run_digests]


class Hasher:
    """An incremental BLAKE3-256 hasher for streams (packs, large files)."""

    __slots__ = ("_h",)

    def __init__(self, *, key: bytes | None = None) -> None:
        self._h = _blake3_hasher(key)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> Digest:
        return Digest(self._h.digest())


def derive_key(context: str, material: bytes) -> bytes:
    """A 32-byte key for one purpose (``context``) from secret ``material`` (BLAKE3 derive_key mode)."""
    return _blake3.blake3(material, derive_key_context=context).digest()


def hash_many(parts: Iterable[bytes | memoryview], *, key: bytes | None = None) -> Digest:
    """Digest of the concatenation of ``parts`` without concatenating them."""
    h = Hasher(key=key)
    for p in parts:
        h.update(p)
    return h.digest()
