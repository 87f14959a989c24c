"""What every maintenance tool shares: progress reporting, the maintenance lock, durations."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..catalog.lock import CatalogLock
from ..errors import CatalogLockedError, MaintenanceError

if TYPE_CHECKING:
    from ..catalog import Session

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
    return datetime.now(UTC)


# -- the maintenance lock -----------------------------------------------------------------

_LOCKS: dict[Path, CatalogLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def maintenance_lock(catalog_path: Path, timeout: float = 10.0) -> Iterator[None]:
    """One maintenance tool at a time per store index on this machine (re-entrant within a thread).

    A local file lock only: it keeps this machine's gc from deleting packs while its fsck
    lists them, and it protects nothing against other machines. What makes maintenance
    safe against writers (and another machine's gc) is the log: every change is a commit
    built from the state it lands on (see :mod:`.collect`). Saves and loads never take it.
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


def indexed_position(s: Session) -> int:
    """The log position the catalog session ``s`` has folded up to (0: an empty log)."""
    from ..catalog.feed import indexed

    got = indexed(s)
    return got[1] if got else 0

