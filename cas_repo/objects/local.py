"""A local folder as an object backend: atomic publish by temp file → fsync → rename."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat as stat_mod
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from .. import faults
from ..errors import ObjectNotFoundError, StoreError, StoreFullError
from .backend import Buffer, ObjectBackend, ObjectInfo
from .keys import LOG, is_valid_key
from .temps import TEMP_PREFIX, abandoned, temp_name
from .turn import CommitTurns

_T = TypeVar("_T")

__all__ = ["TEMP_PREFIX", "LocalBackend"]
_OPEN_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_OPEN_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _io_error(action: str, path: Path | str, exc: OSError, root: Path | None = None) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(action, str(path), exc.strerror or str(exc), str(root) if root else None)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "check the permissions of the store folder"
    elif action in ("read", "list", "stat", "open"):
        hint = "nothing was changed; check the disk (`dmesg`) and retry, then `cas-repo fsck --full`"
    else:
        hint = "the save was not recorded; check the disk and retry"
    return StoreError(f"could not {action} {path}: {exc.strerror or exc}; {hint}")


# Blobs from this size up are written with O_DIRECT. A buffered write of new data is
# bound by the kernel allocating and filling fresh page-cache pages (measured in this VM:
# 0.3–0.9 GB/s for 64 MiB packs, against ~1.4 GB/s direct, staging copy included), and
# a large pack is rarely read back soon enough to profit from being cached.
DIRECT_MIN = 4 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_BLOCK = 4096  # O_DIRECT wants block-aligned memory, offsets and lengths
_STAGE_SIZE = 8 << 20
_stage = threading.local()


def _write_buffered(fd: int, parts: Sequence[Buffer]) -> None:
    for part in parts:
        _write_all(fd, memoryview(part).cast("B"))


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _write_direct(fd: int, parts: Sequence[Buffer]) -> None:
    """Write ``parts`` through a page-aligned staging buffer; the last block is padded,
    then the file is cut back to its true size."""
    if getattr(_stage, "buf", None) is None:
        _stage.buf = mmap.mmap(-1, _STAGE_SIZE)  # page-aligned, reused by this thread
    stage = memoryview(_stage.buf)
    fill = total = 0
    for part in parts:
        view = memoryview(part).cast("B")
        total += len(view)
        while view:
            n = min(len(view), _STAGE_SIZE - fill)
            stage[fill : fill + n] = view[:n]
            fill += n
            view = view[n:]
            if fill == _STAGE_SIZE:
                _write_all(fd, stage)
                fill = 0
    if fill:
        padded = -(-fill // _BLOCK) * _BLOCK
        stage[fill:padded] = bytes(padded - fill)
        _write_all(fd, stage[:padded])
    os.ftruncate(fd, total)


# preadv takes at most IOV_MAX buffers and Linux moves at most ~2 GiB per call.
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
_MAX_IO = 1 << 30


def _preadv_all(fd: int, views: Sequence[memoryview], offset: int) -> int:
    """Fill ``views`` from ``offset`` on; returns the bytes read (short only at end of file)."""
    views = [v for v in views if len(v)]
    i = done = 0
    while i < len(views):
        j, size = i, 0
        while j < len(views) and j - i < _IOV_MAX and (j == i or size + len(views[j]) <= _MAX_IO):
            size += len(views[j])
            j += 1
        n = os.preadv(fd, views[i:j], offset + done)
        if n == 0:
            break
        done += n
        # Skip the buffers this call filled; a partly filled one continues where it stopped.
        while n:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0
    return done


def _unlink_quietly(name: str, d: int) -> None:
    try:
        os.unlink(name, dir_fd=d)
    except OSError:
        pass


def _vanished(path: Path, exc: OSError) -> StoreError:
    return StoreError(
        f"could not publish {path}: its temp file was deleted twice between being written and being "
        f"published ({exc.strerror or exc}); nothing was recorded. Something removes fresh `.tmp-*` files in "
        f"{path.parent} (a cleanup script; gc or fsck --repair of an older cas-repo, run with a short --grace): "
        "stop it and retry")


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, tz=UTC)


class LocalBackend(ObjectBackend):
    """Blobs as read-only files under ``root``; shard folders are created on demand.

    Symlinks are never followed: a link planted at a blob path or a shard folder makes
    the operation fail instead of reaching outside ``root``. Blobs of ``DIRECT_MIN`` bytes
    and more bypass the page cache (``O_DIRECT``) unless ``direct_io=False``; where the
    filesystem refuses it, writes fall back to the cache.
    """

    takes_commit_turns = True

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True, direct_io: bool = True) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self._fsync = fsync
        self._direct = direct_io and bool(_O_DIRECT)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail("create", self.root, exc) from exc
        self._turns = CommitTurns(lambda: self._open_dir(self.root / LOG, create=True))

    def commit_turn(self) -> AbstractContextManager[object]:
        """This machine's processes create log commits one at a time (see :mod:`.turn`)."""
        return self._turns.turn()

    def close(self) -> None:
        self._turns.close()

    def _fail(self, action: str, path: Path | str, exc: OSError) -> StoreError:
        return _io_error(action, path, exc, self.root)

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
            raise self._fail("open", self.root, exc) from exc
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
                raise self._fail("open", cur, exc) from exc
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
            raise self._fail("refresh", path, exc) from exc
        direct = self._direct and sum(memoryview(p).nbytes for p in parts) >= DIRECT_MIN
        for attempt in range(2):
            tmp = self._write_temp(d, path, parts, direct)
            if faults.ARMED:
                faults.crash_point("after-fsync")
            try:
                os.rename(tmp, name, src_dir_fd=d, dst_dir_fd=d)
                break
            except FileNotFoundError as exc:
                # Our own folder descriptor is held: the temp file itself went (an old
                # cas-repo's gc, a cleanup script). Nothing was published; write it again.
                if attempt:
                    raise _vanished(path, exc) from exc
            except BaseException as exc:
                _unlink_quietly(tmp, d)
                if isinstance(exc, OSError):
                    raise self._fail("write", path, exc) from exc
                raise
        if faults.ARMED:
            faults.crash_point("after-rename")
        if self._fsync:
            # The rename is durable only once the directory entry is.
            try:
                os.fsync(d)
            except OSError as exc:
                raise self._fail("sync", path.parent, exc) from exc
        return True

    def _write_temp(self, d: int, path: Path, parts: Sequence[Buffer], direct: bool) -> str:
        """A new temp file beside ``path`` holding ``parts``, fsynced and read-only; its name."""
        tmp = temp_name()
        try:
            try:
                fd = os.open(tmp, _OPEN_TEMP | (_O_DIRECT if direct else 0), 0o644, dir_fd=d)
            except OSError as exc:
                if not direct or exc.errno != errno.EINVAL:
                    raise
                self._direct = direct = False  # this filesystem has no O_DIRECT (e.g. tmpfs)
                fd = os.open(tmp, _OPEN_TEMP, 0o644, dir_fd=d)
        except OSError as exc:
            raise self._fail("create", path.parent / tmp, exc) from exc
        try:
            try:
                if direct:
                    self._put_direct(fd, parts)
                else:
                    _write_buffered(fd, parts)
                if faults.ARMED:
                    faults.crash_point("after-temp-write")
                if self._fsync:
                    os.fsync(fd)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
        except BaseException as exc:
            _unlink_quietly(tmp, d)
            if isinstance(exc, OSError):
                raise self._fail("write", path, exc) from exc
            raise
        return tmp

    def create(self, key: str, data: bytes) -> bool:
        """Write a temp file, fsync it, then ``link(2)`` it to ``key``: the link fails with
        EEXIST if any other process linked first, so exactly one creator wins, and the
        name only ever points at complete, durable bytes."""
        path = self._path(key)
        d = self._open_dir(path.parent, create=True)
        try:
            if not self._link_new(d, path, data):
                return False
            if self._fsync:
                try:
                    os.fsync(d)  # the new name must outlive a power cut, like the bytes
                except OSError as exc:
                    raise StoreError.advised(
                        f"{path} was published, but syncing its folder failed ({exc.strerror or exc}): it is "
                        "visible now and may not survive a power cut",
                        "check the disk; do not simply retry (look with history() first: the change may "
                        "already be there)",
                        "check the disk; do not simply retry (look with `cas-repo log MODEL` first: the "
                        "change may already be there)") from exc
            return True
        finally:
            os.close(d)

    def _link_new(self, d: int, path: Path, data: bytes) -> bool:
        for attempt in range(2):
            tmp = temp_name()
            try:
                fd = os.open(tmp, _OPEN_TEMP, 0o444, dir_fd=d)
            except OSError as exc:
                raise self._fail("create", path.parent / tmp, exc) from exc
            try:
                try:
                    _write_all(fd, memoryview(data).cast("B"))
                    if self._fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                if faults.ARMED:
                    faults.crash_point("before-link")
                try:
                    os.link(tmp, path.name, src_dir_fd=d, dst_dir_fd=d, follow_symlinks=False)
                except FileExistsError:
                    return False
                except FileNotFoundError as exc:
                    # The temp file went between its fsync and the link (see _put): nothing
                    # was published, so writing it again is all there is to do.
                    if attempt:
                        raise _vanished(path, exc) from exc
                    continue
                return True
            except OSError as exc:
                raise self._fail("write", path, exc) from exc
            finally:
                _unlink_quietly(tmp, d)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def get(self, key: str) -> bytes | None:
        try:
            fd = self._open(key)
        except ObjectNotFoundError:
            return None
        try:
            chunks: list[bytes] = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        except OSError as exc:
            raise self._fail("read", key, exc) from exc
        finally:
            os.close(fd)

    def _put_direct(self, fd: int, parts: Sequence[Buffer]) -> None:
        try:
            _write_direct(fd, parts)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # The filesystem refused an aligned direct write: start over through the cache.
            self._direct = False
            os.ftruncate(fd, 0)
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)
            os.lseek(fd, 0, os.SEEK_SET)
            _write_buffered(fd, parts)

    def _open(self, key: str) -> int:
        return self._in_dir(key, "open", lambda name, d: os.open(name, _OPEN_READ, dir_fd=d))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        fd = self._open(key)
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise self._fail("read", key, exc) from exc
        finally:
            os.close(fd)

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several ranges of one blob with a single open."""
        fd = self._open(key)
        try:
            return [os.pread(fd, length, offset) for offset, length in ranges]
        except OSError as exc:
            raise self._fail("read", key, exc) from exc
        finally:
            os.close(fd)

    def read_ranges_into(self, key: str, ranges: Sequence[tuple[int, Sequence[memoryview]]]) -> list[int]:
        """``preadv`` straight into the caller's buffers: no intermediate bytes object."""
        fd = self._open(key)
        try:
            return [_preadv_all(fd, views, offset) for offset, views in ranges]
        except OSError as exc:
            raise self._fail("read", key, exc) from exc
        finally:
            os.close(fd)

    def prefetch(self, key: str, offset: int, length: int) -> None:
        """``posix_fadvise(WILLNEED)``: the kernel reads the range ahead while the caller
        copies and hashes what came before (best effort: any failure is ignored)."""
        try:
            fd = self._open(key)
        except (ObjectNotFoundError, StoreError):
            return  # the read itself reports it
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
        except (OSError, AttributeError):
            pass
        finally:
            os.close(fd)

    def _in_dir(self, key: str, action: str, fn: Callable[[str, int], _T]) -> _T:
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
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{path} is a symlink; refusing to follow it") from exc
            raise self._fail(action, path, exc) from exc
        finally:
            os.close(d)

    def exists(self, key: str) -> bool:
        """Whether anything is at ``key``: one ``lstat`` (nothing is read, so nothing is
        followed; a symlink there counts as present, and every read refuses it)."""
        path = self._path(key)
        try:
            os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _io_error("stat", path, exc) from exc
        return True

    def stat(self, key: str) -> ObjectInfo:
        st = self._in_dir(key, "stat", lambda name, d: os.stat(name, dir_fd=d, follow_symlinks=False))
        if not stat_mod.S_ISREG(st.st_mode):
            raise StoreError(f"{self._path(key)} is not a regular file (a symlink?); refusing to use it")
        return ObjectInfo(key, st.st_size, _mtime(st))

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        # Walk only below the deepest folder the prefix names: the log and the packs are
        # separate trees, and listing one must not read the other.
        top = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / top if top else self.root
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(TEMP_PREFIX):
                    continue
                full = os.path.join(dirpath, name)
                key = os.path.relpath(full, self.root).replace(os.sep, "/")
                if not key.startswith(prefix) or not is_valid_key(key):
                    continue
                if start_after is not None and key <= start_after:
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
        """Temp files no write in progress can be using (:func:`.temps.abandoned`)."""
        now = datetime.now(UTC)
        for dirpath, _dirnames, filenames in os.walk(self.root, followlinks=False):
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    full = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(full)
                    except FileNotFoundError:
                        continue
                    if abandoned(name, _mtime(st), now):
                        yield ObjectInfo(os.path.relpath(full, self.root), st.st_size, _mtime(st))

    def remove_incomplete(self, info: ObjectInfo) -> bool:
        """Delete a temp file :meth:`list_incomplete` reported, unless a write has touched it since."""
        name = os.path.basename(info.key)
        if not name.startswith(TEMP_PREFIX):
            raise StoreError(f"{info.key} is not a temp file")
        rel = Path(info.key)
        if rel.is_absolute() or ".." in rel.parts:
            raise StoreError(f"{info.key} is not inside the store")
        try:
            d = self._open_dir(self.root / rel.parent, create=False)
        except FileNotFoundError:
            return False
        try:
            # Judged again on the file as it is now: the listing may be minutes old.
            if not abandoned(name, _mtime(os.stat(name, dir_fd=d, follow_symlinks=False)), datetime.now(UTC)):
                return False
            os.unlink(name, dir_fd=d)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._fail("delete", self.root / rel, exc) from exc
        finally:
            os.close(d)
