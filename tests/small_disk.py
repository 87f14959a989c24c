"""A real, small filesystem that tests can fill: a tmpfs mounted for one test.

Mounting needs root and mount(8) (CI runs as root); elsewhere the tests that use it skip
and say why. The disk is filled by a filler file, written until the kernel says ENOSPC,
and emptied by deleting it: what every layer above sees is a real full disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SIZE = "32m"


class SmallDisk:
    """A mounted tmpfs at ``path``, and a filler file to take its free space away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take the free space away, all of it or all but about ``leave`` bytes."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if leave:
                os.write(fd, bytes(max(self.free() - leave, 0)))
                return
            for block in (1 << 20, 4096, 1):
                try:
                    while True:
                        os.write(fd, bytes(block))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:  # what this is for; anything else is a failure
                        raise
        finally:
            os.close(fd)

    def empty(self) -> None:
        """Give the filler's space back."""
        self.filler.unlink(missing_ok=True)


@contextmanager
def mounted(where: Path) -> Iterator[SmallDisk]:
    """Mount a tmpfs of :data:`SIZE` at ``where`` for the block; skip the test if it cannot be."""
    if os.geteuid() != 0 or shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("needs root and mount(8) to mount a small tmpfs and fill it (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"could not mount a tmpfs at {where} ({done.stderr.strip()}): a container without "
                    "CAP_SYS_ADMIN cannot; these tests need a real filesystem to fill")
    try:
        yield SmallDisk(where)
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
