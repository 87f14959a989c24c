"""Turns at creating log commits among the processes of one machine (a folder store).

Racing for the next log position is correct with any number of writers, because
``create`` lets exactly one of them win it; but on a folder every attempt writes and
fsyncs its commit before the ``link(2)`` that decides, so with many processes saving at
once most attempts lose after paying that fsync, and an unlucky writer loses many times
in a row (measured here: 8 processes saving one model, a save losing up to 10 races,
p99 latency up to ~46× the median). Taking turns on an advisory ``flock`` first lets
the processes of one machine attempt one at a time, so that nearly every attempt wins.

The turn is only a hint: ``create`` stays the sole arbiter, so a writer that cannot get
its turn within :data:`TURN_WAIT` seconds (a holder stopped under a debugger, a folder
where ``flock`` is refused, another machine writing) races as before; a dead holder's
turn ends with it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# A turn lasts one commit (a few ms; a stalled fsync, longer): waiting beyond this for a
# holder that is stopped or starved of CPU costs more than racing it.
TURN_WAIT = 0.5


class CommitTurns:
    """Turns on one folder store's log folder itself (``flock`` of its descriptor: no
    file is added to the store), opened on first use and kept open."""

    def __init__(self, open_folder: Callable[[], int]) -> None:
        self._open_folder = open_folder
        self._fd: int | None = None
        self._unusable = False
        self._lock = threading.Lock()  # flock is per open file: threads take turns here first

    @contextmanager
    def turn(self) -> Iterator[bool]:
        """Wait (up to :data:`TURN_WAIT` s) for this process's turn; yields whether it got one."""
        with self._lock:
            fd = self._open()
            got = fd is not None and _flock_within(fd, TURN_WAIT)
            try:
                yield got
            finally:
                if got and fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int | None:
        if self._fd is None and not self._unusable:
            try:
                self._fd = self._open_folder()
            except Exception:  # an unreadable folder, a planted symlink: race without turns
                self._unusable = True
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _flock_within(fd: int, seconds: float) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except OSError:  # flock refused by this filesystem
        return False
    # Wait in the kernel, which hands the lock on as soon as it is free (polling with
    # sleeps let some writers wait 5× longer than others here), from a helper thread so
    # that a stopped holder costs a bounded wait.
    # The helper waits on a duplicate of the descriptor (the same open file, so the same
    # lock) that only it closes: a wait that outlives this store's close can never lock or
    # unlock whatever file a reused descriptor number names by then.
    waiter = _Waiter(os.dup(fd))
    threading.Thread(target=waiter.take, name="cas-commit-turn", daemon=True).start()
    return waiter.result(seconds)


class _Waiter:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.got = self.abandoned = False

    def take(self) -> None:
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except OSError:
                return
            with self.lock:
                if self.abandoned:  # its caller went on without: hand the turn on at once
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                else:
                    self.got = True  # held now through the caller's descriptor (the same open file)
        finally:
            os.close(self.fd)
            self.done.set()

    def result(self, seconds: float) -> bool:
        self.done.wait(seconds)
        with self.lock:
            self.abandoned = not self.got
            return self.got
