"""The machine's limits, measured in the same run: BLAKE3 on one core, memcpy, write+fsync.

Other scenarios call these helpers over their own byte counts, so every ratio compares
figures taken minutes apart on the same machine.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from cas_repo.digest import Hasher

from .framework import Result, Timing, measure, scratch

TITLE = "Machine limits"
ABOUT = (
    "The ceilings every other figure is compared with, measured in the same run: BLAKE3 on "
    "one core (the floor of a verified load), memcpy into already-touched memory and into "
    "fresh memory (page faults), and a sequential write + fsync of a new file, buffered "
    "(through the page cache, as `pickle.dump` does) and with `O_DIRECT`. Then the two "
    "durable small writes every save makes, through the store's own local backend: a "
    "commit-sized (1 KB) create-only publish (temp file, fsync, `link(2)`, fsync of the "
    "folder) and a pack-sized (128 KB) atomic put (temp file, fsync, rename, fsync of the "
    "folder), each with and without fsync, beside a bare 1 KB write + fsync: their sum is the "
    "floor under a durable save's own I/O.")

BLOCK = 8 << 20
_DIRECT = getattr(os, "O_DIRECT", 0)


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def blake3_single(data: memoryview | bytes) -> None:
    """Hash ``data`` on one thread (cas_repo's Hasher never spreads over threads)."""
    h = Hasher()
    h.update(data)
    h.digest()


def aligned_buffer(nbytes: int, fill: int = 0x5A) -> mmap.mmap:
    """A page-aligned, already-touched buffer (O_DIRECT needs aligned memory)."""
    buf = mmap.mmap(-1, nbytes)
    np.frombuffer(buf, dtype=np.uint8)[:] = fill
    return buf


def write_fsync(path: Path, src: memoryview | mmap.mmap, nbytes: int, *, direct: bool = False) -> None:
    """Write ``nbytes`` (repeating ``src``) to a new file sequentially, fsync, close.

    With ``direct`` the size is rounded up to whole 4 KiB blocks, as O_DIRECT requires.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | (_DIRECT if direct else 0)
    if direct:
        nbytes = -(-nbytes // 4096) * 4096
    fd = os.open(path, flags, 0o644)
    view = memoryview(src)
    try:
        left = nbytes
        while left:
            left -= os.write(fd, view[: min(left, len(view))])
        os.fsync(fd)
    finally:
        view.release()
        os.close(fd)


def write_fsync_timing(nbytes: int, repeats: int, *, direct: bool = False) -> Timing:
    """Seconds to write+fsync a new file of ``nbytes``; the file is deleted between runs."""
    src = aligned_buffer(min(BLOCK, nbytes))
    with scratch("write") as d:
        path = d / "blob"

        def remove() -> None:
            if path.exists():
                path.unlink()

        try:
            return measure(lambda: write_fsync(path, src, nbytes, direct=direct), repeats, setup=remove)
        finally:
            src.close()


def mmap_verify_timing(nbytes: int, repeats: int) -> Timing:
    """Seconds to map a warm file of ``nbytes`` and BLAKE3 it in place, one thread: the
    floor of a verified load that copies nothing."""
    import mmap as mmap_mod

    with scratch("mmap") as d:
        path = d / "blob"
        src = aligned_buffer(min(BLOCK, nbytes))
        try:
            write_fsync(path, src, nbytes)
        finally:
            src.close()

        def once() -> None:
            with open(path, "rb") as f, mmap_mod.mmap(f.fileno(), 0, access=mmap_mod.ACCESS_READ) as m:
                blake3_single(m)

        return measure(once, repeats)


def memcpy_timing(src: np.ndarray, repeats: int, *, fresh: bool = False) -> Timing:
    """Seconds to copy ``src`` into touched memory (or, ``fresh``, into new pages)."""
    if fresh:
        return measure(src.copy, repeats)
    dst = np.empty_like(src)
    dst[:] = 0
    return measure(lambda: np.copyto(dst, src), repeats)


def small_write_timings(repeats: int) -> dict[str, Timing]:
    """Latency of the durable small writes a save makes (ms-scale, dominated by fsync)."""
    from cas_repo.digest import Digest
    from cas_repo.objects.keys import log_key, pack_key
    from cas_repo.objects.local import LocalBackend

    commit, pack = os.urandom(1024), [os.urandom(128 << 10)]
    out: dict[str, Timing] = {}
    with scratch("small") as d:
        for fsync in (True, False):
            backend = LocalBackend(d / f"objects-{fsync}", fsync=fsync)
            positions = iter(range(1, 10**9))
            # Defaults bind this pass's backend (measure runs the lambdas before the next pass anyway).
            out[f"create {fsync}"] = measure(lambda b=backend, p=positions: b.create(log_key(next(p)), commit),
                                             repeats)
            # One shard folder, as in a store in use (a new shard costs a mkdir + fsync more).
            names = iter(Digest.from_hex("00" + os.urandom(31).hex()) for _ in range(10**9))
            out[f"put {fsync}"] = measure(lambda b=backend, n=names: b.put(pack_key(next(n)), pack), repeats)
        path = d / "bare"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            def bare() -> None:
                os.pwrite(fd, commit, 0)
                os.fsync(fd)

            out["bare"] = measure(bare, repeats)
        finally:
            os.close(fd)
    return out


def run(quick: bool) -> list[Result]:
    nbytes = (64 if quick else 1024) << 20
    repeats = 3 if quick else 5
    src = np.frombuffer(os.urandom(16 << 20), dtype=np.uint8)
    src = np.tile(src, nbytes // src.nbytes)
    size = f"{nbytes >> 20} MiB"
    rows = []

    def rate(metric: str, t: Timing) -> Result:
        return Result("limits", f"{metric} ({size})", gbps(nbytes, t.median), "GB/s",
                      low=gbps(nbytes, t.max), high=gbps(nbytes, t.min), repeats=t.n)

    rows.append(rate("BLAKE3, one thread", measure(lambda: blake3_single(src), repeats)))
    rows.append(rate("memcpy into touched memory", memcpy_timing(src, repeats)))
    rows.append(rate("memcpy into fresh memory", memcpy_timing(src, repeats, fresh=True)))
    rows.append(rate("write + fsync, new file, buffered", write_fsync_timing(nbytes, repeats)))
    if _DIRECT:
        try:
            rows.append(rate("write + fsync, new file, O_DIRECT", write_fsync_timing(nbytes, repeats, direct=True)))
        except OSError:
            pass  # the scratch filesystem (e.g. tmpfs) does not do O_DIRECT
    small = small_write_timings(20 if quick else 100)
    rows += [
        small["bare"].result("limits", "write 1 KB in place + fsync (bare)"),
        small["create True"].result("limits", "commit-sized create (1 KB): temp + fsync + link + fsync folder"),
        small["create False"].result("limits", "commit-sized create (1 KB), no fsync"),
        small["put True"].result("limits", "pack-sized put (128 KB): temp + fsync + rename + fsync folder"),
        small["put False"].result("limits", "pack-sized put (128 KB), no fsync"),
    ]
    return rows
