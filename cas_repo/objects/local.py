"""A local folder as an object backend: atomic publish by temp file → fsync → rename."""

from __future__ import annotations

import errno
import os
import secrets
import stat as stat_mod
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from .. import faults
from ..errors import ObjectNotFoundError, StoreError
from .backend import Buffer, ObjectBackend, ObjectInfo
from .keys import is_valid_key

TEMP_PREFIX = ".tmp-"
_OPEN_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_OPEN_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _io_error(action: str, path: Path | str, exc: OSError) -> StoreError:
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full: free space (e.g. `cas-repo gc`) and retry; nothing was recorded"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "check the permissions of the store folder"
    else:
        hint = "the save was not recorded; check the disk and retry"
    return StoreError(f"could not {action} {path}: {exc.strerror or exc}; {hint}")


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)


class LocalBackend(ObjectBackend):
    """Blobs as read-only files under ``root``; shard folders are created on demand.

    Symlinks are never followed: a link planted at a blob path or a shard folder makes
    the operation fail instead of reaching outside ``root``.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self._fsync = fsync
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _io_error("create", self.root, exc) from exc

    # -- paths -------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        if not is_valid_key(key):
            raise StoreError(f"refusing malformed object key {key[:100]!r}")
        return self.root / key

    def _open_dir(self, d: Path, create: bool) -> int:
        """A descriptor of folder ``d``, reached from root one component at a time.

        Each component is opened with O_NOFOLLOW and every later call is relative to
        the descriptor, so a symlink planted at any point — even after this process
        has used the folder — is refused rather than followed (no check-then-use race).
        The root itself may be a link: that is the owner's choice, not a planted one.
        """
        try:
            fd = os.open(self.root, _OPEN_DIR & ~_NOFOLLOW)
        except OSError as exc:
            raise _io_error("open", self.root, exc) from exc
        cur = self.root
        try:
            for part in d.relative_to(self.root).parts:
                cur = cur / part
                try:
                    nfd = os.open(part, _OPEN_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        if self._fsync:
                            os.fsync(fd)  # the new folder's entry must outlive a power cut too
                    except FileExistsError:
                        pass
                    nfd = os.open(part, _OPEN_DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError) and exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StoreError(f"{cur} is not a plain directory (a symlink?); "
                                 "refusing to follow it") from exc
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise _io_error("open", cur, exc) from exc
            raise

    # -- primitives ----------------------------------------------------------------------

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        path = self._path(key)
        d = self._open_dir(path.parent, create=True)
        try:
            return self._put(d, path, parts)
        finally:
            os.close(d)

    def _put(self, d: int, path: Path, parts: Sequence[Buffer]) -> bool:
        name = path.name
        try:
            os.utime(name, dir_fd=d, follow_symlinks=False)
            if not stat_mod.S_ISREG(os.stat(name, dir_fd=d, follow_symlinks=False).st_mode):
                raise StoreError(f"{path} is a symlink (or not a file); refusing to use it")
            return False  # present: content addressing makes the bytes identical
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _io_error("refresh", path, exc) from exc
        tmp = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        try:
            fd = os.open(tmp, _OPEN_TEMP, 0o644, dir_fd=d)
        except OSError as exc:
            raise _io_error("create", path.parent / tmp, exc) from exc
        try:
            try:
                for part in parts:
                    view = memoryview(part).cast("B")
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                if faults.ARMED:
                    faults.crash_point("after-temp-write")
                if self._fsync:
                    os.fsync(fd)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            if faults.ARMED:
                faults.crash_point("after-fsync")
            os.rename(tmp, name, src_dir_fd=d, dst_dir_fd=d)
        except BaseException as exc:
            try:
                os.unlink(tmp, dir_fd=d)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise _io_error("write", path, exc) from exc
            raise
        if faults.ARMED:
            faults.crash_point("after-rename")
        if self._fsync:
            # The rename is durable only once the directory entry is.
            try:
                os.fsync(d)
            except OSError as exc:
                raise _io_error("sync", path.parent, exc) from exc
        return True

    def _open(self, key: str) -> int:
        path = self._path(key)
        try:
            d = self._open_dir(path.parent, create=False)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        try:
            return os.open(path.name, _OPEN_READ, dir_fd=d)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{path} is a symlink; refusing to follow it") from exc
            raise _io_error("open", path, exc) from exc
        finally:
            os.close(d)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        fd = self._open(key)
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise _io_error("read", key, exc) from exc
        finally:
            os.close(fd)

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several ranges of one blob with a single open."""
        fd = self._open(key)
        try:
            return [os.pread(fd, length, offset) for offset, length in ranges]
        except OSError as exc:
            raise _io_error("read", key, exc) from exc
        finally:
            os.close(fd)

    def _in_dir(self, key: str, action: str, fn) -> object:
        """Run ``fn(name, dir_fd)`` for ``key`` inside its folder, reached without symlinks."""
        path = self._path(key)
        try:
            d = self._open_dir(path.parent, create=False)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        try:
            return fn(path.name, d)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            raise _io_error(action, path, exc) from exc
        finally:
            os.close(d)

    def stat(self, key: str) -> ObjectInfo:
        st = self._in_dir(key, "stat", lambda name, d: os.stat(name, dir_fd=d, follow_symlinks=False))
        if not stat_mod.S_ISREG(st.st_mode):
            raise StoreError(f"{self._path(key)} is not a regular file (a symlink?); refusing to use it")
        return ObjectInfo(key, st.st_size, _mtime(st))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(TEMP_PREFIX):
                    continue
                full = os.path.join(dirpath, name)
                key = os.path.relpath(full, base).replace(os.sep, "/")
                if not key.startswith(prefix) or not is_valid_key(key):
                    continue
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue  # deleted by a concurrent gc
                yield ObjectInfo(key, st.st_size, _mtime(st))

    def delete(self, key: str) -> None:
        try:
            self._in_dir(key, "delete", lambda name, d: os.unlink(name, dir_fd=d))
        except ObjectNotFoundError:
            pass

    def touch(self, key: str) -> None:
        self._in_dir(key, "touch", lambda name, d: os.utime(name, dir_fd=d, follow_symlinks=False))

    def list_incomplete(self) -> Iterator[ObjectInfo]:
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    full = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(full)
                    except FileNotFoundError:
                        continue
                    yield ObjectInfo(os.path.relpath(full, self.root), st.st_size, _mtime(st))

    def remove_incomplete(self, info: ObjectInfo) -> None:
        name = os.path.basename(info.key)
        if not name.startswith(TEMP_PREFIX):
            raise StoreError(f"{info.key} is not a temp file")
        rel = Path(info.key)
        if rel.is_absolute() or ".." in rel.parts:
            raise StoreError(f"{info.key} is not inside the store")
        try:
            d = self._open_dir(self.root / rel.parent, create=False)
        except FileNotFoundError:
            return
        try:
            os.unlink(name, dir_fd=d)
        except FileNotFoundError:
            pass
        finally:
            os.close(d)
