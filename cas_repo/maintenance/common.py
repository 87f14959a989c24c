"""What every maintenance tool shares: progress reporting, the maintenance lock, durations."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from ..catalog.lock import CatalogLock
from ..digest import Digest
from ..errors import CatalogLockedError, MaintenanceError
from ..location import Location
from ..objects.pack import pack_size

DEFAULT_GRACE = timedelta(hours=24)


class ProgressBar(Protocol):
    """What a long operation reports to (the CLI passes ``Output.progress``)."""

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[int | None, str], ProgressBar]


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(total: int | None, label: str) -> ProgressBar:
    """A progress factory that reports nothing (the library default)."""
    return _Silent()


@contextmanager
def progress_bar(progress: ProgressFactory, total: int | None, label: str) -> Iterator[ProgressBar]:
    bar = progress(total, label)
    try:
        yield bar
    finally:
        bar.close()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- the maintenance lock -----------------------------------------------------------------

_LOCKS: dict[Path, CatalogLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def maintenance_lock(catalog_path: Path, timeout: float = 10.0) -> Iterator[None]:
    """One maintenance tool at a time per store (re-entrant within a thread).

    gc, fsck, retain, audit and rebuild-catalog each read the catalog and the object
    store in several steps; two of them interleaved (a gc deleting packs while fsck
    lists them) would report or do wrong things. Saves and loads do not take this lock.
    """
    path = catalog_path.with_name(catalog_path.name + ".maintenance.lock")
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(path, CatalogLock(path, timeout=timeout))
    try:
        lock.acquire(timeout)
    except CatalogLockedError as exc:
        raise MaintenanceError(
            f"another maintenance command (gc, fsck, retain, audit or rebuild-catalog) is running on "
            f"this store ({exc}); wait for it to finish and retry") from exc
    try:
        yield
    finally:
        lock.release()


# -- durations ------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 1}


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"30d"``, ``"2w"`` or ``"0"`` as a timedelta.

    Raises:
        ValueError: anything else.
    """
    m = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"a duration looks like 90s, 15m, 24h, 30d or 2w, got {text!r}")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def format_duration(td: timedelta) -> str:
    s = int(td.total_seconds())
    for unit, n in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


# -- small shared helpers ----------------------------------------------------------------------


def packs_of(locs: Sequence[Location]) -> tuple[tuple[str, int, int], ...]:
    """(pack, size, entries) of the packs one ``ObjectStore.write`` call made for ``locs``."""
    packs: dict[Digest, list[int]] = {}
    for loc in locs:
        acc = packs.setdefault(loc.pack, [0, 0])
        acc[0] += loc.stored_size
        acc[1] += 1
    return tuple((p.hex, pack_size(stored, n), n) for p, (stored, n) in packs.items())


def batched(items: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
