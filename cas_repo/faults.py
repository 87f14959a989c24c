"""Crash points for the crash-consistency tests; inert unless ``CAS_REPO_CRASH_AT`` is set.

The write path calls :func:`crash_point` at each step whose interruption it must survive
(temp file written, fsynced, renamed; catalog transaction open; committed). Normal runs
pay one falsy global check per call. A test runs a save in a subprocess with
``CAS_REPO_CRASH_AT=<point>`` (or ``<point>#<n>`` for the n-th time the point is
reached) and the process SIGKILLs itself there: no ``finally`` block, ``atexit`` hook or
buffered write gets to run, exactly as with a power cut minus the page cache.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "after-temp-write",      # objects: bytes written to the temp file, not yet fsynced
    "after-fsync",           # objects: temp file fsynced, not yet renamed
    "after-rename",          # objects: pack published, directory not yet fsynced
    "objects-written",       # repository: every pack of a save durable, log untouched
    "before-link",           # log: commit written to a fsynced temp file, not yet linked
    "after-commit",          # repository: commit created in the log, caller not yet told
    "inside-transaction",    # catalog index: rows inserted, transaction not yet committed
)


def _parse(spec: str) -> tuple[str, int] | None:
    if not spec:
        return None
    point, _, nth = spec.partition("#")
    if point not in POINTS:
        raise ValueError(f"CAS_REPO_CRASH_AT={spec!r}: the crash points are {', '.join(POINTS)}")
    return point, int(nth or 1)


ARMED = _parse(os.environ.get("CAS_REPO_CRASH_AT", ""))
_hits: dict[str, int] = {}


def crash_point(point: str) -> None:
    """SIGKILL this process if ``point`` is the armed crash point (and hit count)."""
    if ARMED is None or ARMED[0] != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
