"""Per-chunk compression with zstd through pyarrow's codecs (pyarrow.compress lives here)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .errors import IntegrityError

if TYPE_CHECKING:
    import pyarrow as pa

RAW = 0
ZSTD = 1
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd"}

ZSTD_LEVEL = 1
# Keep the compressed form only when it saves at least this fraction: decompressing costs
# time on every load, and float arrays rarely get below ~0.9.
MIN_SAVING = 0.10
# Pickle streams below this size are stored uncompressed (see content.to_content): for a
# ~300 KB LightGBM model zstd took 1.2 ms to compress and 0.5 ms to decompress against
# 3.3 ms of pickling, to save ~180 KB a save.
SMALL_STREAM = 1 << 20


@functools.cache
def _zstd() -> pa.Codec:
    # pyarrow takes ~0.2 s to import: paid by the first chunk (de)compressed, not by every
    # process that imports cas_repo (`cas-repo --help`, `ls`).
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=ZSTD_LEVEL)


def maybe_compress(data: memoryview | bytes) -> tuple[int, memoryview | bytes]:
    """Return ``(codec, stored_bytes)``: zstd where it saves ≥ 10 %, else the input as is."""
    n = len(data)
    if n < 512:
        return RAW, data
    packed = _zstd().compress(data, asbytes=True)
    if len(packed) <= n * (1 - MIN_SAVING):
        return ZSTD, packed
    return RAW, data


def compresses_well(sample: memoryview | bytes) -> bool:
    """Whether a sample of a large buffer is worth compressing at all."""
    return maybe_compress(sample)[0] == ZSTD


def decompress(codec: int, stored: bytes | memoryview, size: int) -> bytes | memoryview:
    """Inverse of :func:`maybe_compress`; malformed input is an :class:`IntegrityError`."""
    if codec == RAW:
        return stored
    if codec == ZSTD:
        zstd = _zstd()
        import pyarrow as pa  # already loaded by _zstd(): a dictionary lookup

        try:
            out = zstd.decompress(stored, decompressed_size=size, asbytes=True)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise IntegrityError(f"a zstd chunk does not decompress ({exc})") from exc
        if len(out) != size:
            raise IntegrityError(f"a zstd chunk decompressed to {len(out)} bytes, expected {size}")
        return out
    raise IntegrityError(f"unknown codec {codec} in a pack index")


def compress_all(data: bytes) -> bytes:
    """zstd of ``data`` behind its length (u64), for blobs that are stored whole (checkpoints)."""
    return len(data).to_bytes(8, "little") + _zstd().compress(data, asbytes=True)


def decompress_all(stored: bytes | memoryview) -> bytes:
    """Inverse of :func:`compress_all`; malformed input is an :class:`IntegrityError`."""
    if len(stored) < 8:
        raise IntegrityError("a compressed blob is too short")
    size = int.from_bytes(bytes(stored[:8]), "little")
    return bytes(decompress(ZSTD, stored[8:], size))
