"""Temp files of local writes: their names, and when one cannot belong to a write in progress.

A local write goes to a temp file ``.tmp-<origin>-<pid>-<token>`` beside its final name;
once complete, the file is fsynced and published at once (renamed to a pack's name,
linked to a log position). gc and ``fsck --repair`` remove the temp files interrupted
writes leave behind, and must never remove one a write is still using: the write would
then fail (it never published anything, so nothing is lost, but the user is told to
check a healthy disk).

A temp file is **abandoned** when either:

- its name says a process of this boot and pid namespace made it, and that process is
  gone. ``<origin>`` is a digest of the kernel's boot id and the pid namespace, the only
  scope in which a pid names one process: two machines, two containers or two boots
  never share one, so a pid is only ever looked up where it means something;
- it has not been modified for :data:`IN_USE_FLOOR`. Every ``write(2)`` sets a file's
  mtime, and a write in progress writes continuously, then fsyncs and publishes at once:
  the longest a live temp file goes untouched is one fsync of it, seconds even for
  gigabytes on a working disk (a pack of 4 MiB or more is written with ``O_DIRECT`` and
  has little left to flush). Fifteen minutes is far beyond that, and beyond the retry
  periods of a stalled network filesystem. A write stalled for longer still (a suspended
  process) finds its temp file gone and writes it again once (:mod:`.local`).

A name without a readable origin (written where ``/proc`` is missing, by an older
cas-repo, or by hand) can only become abandoned by age.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

TEMP_PREFIX = ".tmp-"
IN_USE_FLOOR = timedelta(minutes=15)
_ORIGIN_LEN = 12


@functools.cache
def origin() -> str | None:
    """This process's boot and pid namespace as 12 hex digits, or None where Linux's /proc is missing."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return hashlib.blake2b(f"{boot}:{pidns}".encode(), digest_size=_ORIGIN_LEN // 2).hexdigest()


def temp_name() -> str:
    """A new temp file name for this process (unique: 48 random bits)."""
    here = origin()
    return f"{TEMP_PREFIX}{here + '-' if here else ''}{os.getpid()}-{secrets.token_hex(6)}"


def owner(name: str) -> tuple[str, int] | None:
    """``(origin, pid)`` from a temp file's name, or None when the name does not say."""
    parts = name.removeprefix(TEMP_PREFIX).split("-")
    if len(parts) != 3 or len(parts[0]) != _ORIGIN_LEN or not parts[1].isdigit():
        return None
    try:
        int(parts[0], 16)
    except ValueError:
        return None
    return parts[0], int(parts[1])


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True  # 0 would signal our own process group: never take it as a verdict
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, under another user
    return True


def abandoned(name: str, mtime: datetime, now: datetime) -> bool:
    """Whether no write in progress can be using the temp file ``name`` last modified at ``mtime``."""
    if now - mtime >= IN_USE_FLOOR:
        return True
    made_by = owner(name)
    return made_by is not None and made_by[0] == origin() and not _alive(made_by[1])
