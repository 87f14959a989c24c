"""An inter-process lock on the catalog: one DuckDB writer at a time, waiting politely.

A DuckDB file admits one process at a time, so every catalog session runs under an
exclusive ``flock`` on ``catalog.lock``. The kernel drops the lock when its holder dies,
however it dies, so there is no stale lock to detect or break; the holder's pid is
written into the file only to say who is in the way when a wait times out.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import time
from pathlib import Path

from ..errors import CatalogError, CatalogFullError, CatalogLockedError


class CatalogLock:
    """A re-entrant (per thread) exclusive lock over a lock file.

    flock is per open file description, so threads of one process would each need their
    own descriptor; a thread lock in front keeps one descriptor and orders threads.
    """

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def acquire(self, timeout: float | None = None) -> None:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=max(timeout, 0.001)):
            raise CatalogLockedError(
                f"the catalog {self.path.parent} is busy in this process for over {timeout:.0f}s")
        try:
            if self._depth == 0:
                self._take_flock(deadline, timeout)
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def _take_flock(self, deadline: float, timeout: float) -> None:
        # O_NOFOLLOW: the file is truncated below, and a planted link must not aim that elsewhere.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CatalogError(f"{self.path} is a symlink; refusing to follow it (remove it: "
                                   "the lock file is recreated on demand)") from exc
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CatalogFullError(str(self.path), "creating the catalog lock",
                                       exc.strerror or str(exc)) from exc
            raise CatalogError(f"cannot open the catalog lock {self.path}: {exc.strerror or exc}") from exc
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise CatalogLockedError(
                        f"the catalog {self.path.parent} has been locked by {holder} for over "
                        f"{timeout:.0f}s; wait for it to finish, or open the store with a longer "
                        "lock_timeout (a dead holder releases the lock by itself)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except OSError:
            pass  # diagnostics only
        self._fd = fd

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._thread_lock.release()

    def __enter__(self) -> CatalogLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"
