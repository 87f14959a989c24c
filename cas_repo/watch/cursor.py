"""A watch cursor: the last change a watcher handled, in a file that survives crashes.

The file holds ``{"format", "store", "url", "position", "index"}``: every change the
watcher wants up to and including operation ``index`` of commit ``position`` was handled
(``index`` null: all of commit ``position``, the start of a new cursor). It is replaced
atomically after each handled change (temp file, fsync, rename, fsync of the folder), so
a crash at any moment leaves the old cursor or the new one, never a torn one: a restart
never skips a change, and repeats one only if its handler was interrupted.

A lock (``flock`` on ``FILE.lock``; the cursor itself is replaced, so it cannot carry
the lock) keeps a second watcher off a cursor in use. The kernel drops it when its
process dies, kill -9 included.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import CursorError, CursorLockedError

CURSOR_FORMAT = "cas-repo/watch-cursor/1"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a watcher is: everything up to ``(position, index)`` handled (``index`` None: all of ``position``)."""

    store: str
    position: int
    index: int | None = None

    def start(self) -> int:
        """The log position to follow from: the commit holding the next change may be ``position`` itself."""
        return self.position if self.index is None else self.position - 1

    def handled(self, position: int, index: int) -> bool:
        """Whether the change at ``(position, index)`` is at or before this cursor."""
        return position < self.position or (position == self.position and self.index is not None
                                            and index <= self.index)


class CursorFile:
    """A cursor file, locked for one watcher while open (a context manager).

    Raises (on entering):
        CursorLockedError: another watcher holds it.
        CursorError: its folder cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str], url: str = "") -> None:
        self.path = Path(path).absolute()
        self.url = url
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> CursorFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_name(self.path.name + ".lock"), "ab")  # held until __exit__
        except OSError as exc:
            raise CursorError(f"cannot open the cursor {self.path}: {exc.strerror or exc}; give a --cursor path in "
                              "a folder this user can write") from exc
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise CursorLockedError(f"another watcher is using the cursor {self.path} (its lock {lock.name} is "
                                    "held); stop that one first, or give this watcher a --cursor of its own") from exc
        self._lock = lock
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the last descriptor drops the flock
            self._lock = None

    def read(self) -> Cursor | None:
        """The cursor stored, or None if the file does not exist yet.

        Raises:
            CursorError: the file is unreadable or not a cursor.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CursorError(f"cannot read the cursor {self.path}: {exc.strerror or exc}") from exc
        try:
            obj = json.loads(data)
            if obj.get("format") != CURSOR_FORMAT:
                raise ValueError(f"format {obj.get('format')!r:.40}")
            index = obj["index"]
            position = obj["position"]
            if (not isinstance(position, int) or position < 0 or not isinstance(obj["store"], str)
                    or not (index is None or (isinstance(index, int) and index >= 0))):
                raise ValueError("bad fields")
            return Cursor(obj["store"], position, index)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CursorError(f"{self.path} is not a watch cursor ({exc}); point --cursor at another file, or "
                              "delete this one to start again (from the log's end, or --after N)") from exc

    def write(self, cursor: Cursor) -> None:
        """Replace the stored cursor atomically and durably.

        Raises:
            CursorError: it could not be written (the change stays unrecorded: a restart repeats it).
        """
        body: dict[str, Any] = {"format": CURSOR_FORMAT, "store": cursor.store, "url": self.url,
                                "position": cursor.position, "index": cursor.index}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(json.dumps(body, sort_keys=True).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself survives a power cut
            finally:
                os.close(folder)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CursorError(f"cannot write the cursor {self.path}: {exc.strerror or exc}; free space or fix "
                              "permissions, then restart (the last change will be handled again)") from exc
