"""I/O failing under a save — EIO, a full disk — fails cleanly: a clear StoreError, no version, no temp file.

The faults are injected in-process at the OS boundary (``os.write``/``os.fsync``/``os.read``,
only for descriptors inside the store) so the real store code runs unchanged around
them. A save writes its pack(s), then the log commit's temp file, fsyncs it and links it
into place: a fault anywhere before the link records nothing (a pack already renamed
into place stays behind as an orphan for gc); the link itself is the commit.
"""

from __future__ import annotations

import errno
import os

import pytest

from cas_repo import CasRepoError, ModelNotFoundError, ModelStore, StoreError

from .consistency import check_store
from .workers import fingerprint, metadata, payload

SMALL = 50_000
LARGE = 6 << 20  # O_DIRECT pack write


def _target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


@pytest.fixture
def seeded(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, SMALL), metadata("m"))
    return root


def _where(root, part: str):
    """Whether a descriptor is a file (``pack``/``log``) or a folder (``pack-dir``/``log-dir``) of the store."""
    base = str(root / "objects" / ("packs" if part.startswith("pack") else "log"))

    def matches(fd: int) -> bool:
        t = _target(fd)
        if part == "pack-dir":  # a shard folder (after the rename), not a parent fsynced after a mkdir
            return os.path.dirname(t) == os.path.join(base, "blake3") and os.path.isdir(t)
        return t.startswith(base) and os.path.isdir(f"/proc/self/fd/{fd}") == part.endswith("-dir")
    return matches


def _assert_clean_failure(root, err: BaseException, *, orphans: int) -> None:
    assert isinstance(err, StoreError) and isinstance(err, CasRepoError)
    report = check_store(root, full=True)
    assert report.clean, report.problems
    assert report.temp_files == ()
    assert len(report.orphan_packs) == orphans
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == [1]  # no version for the failed save
        assert store.load_model("m")[1].version == 1
        with pytest.raises(ModelNotFoundError):
            store.get_model_metadata("other")
        # usable afterwards: the same save now succeeds
        model = payload(2, SMALL)
        md = metadata("m")
        store.save_model(model, md)
        assert md.version == 2
        assert fingerprint(store.load_model("m")[0]) == fingerprint(model)
    assert check_store(root, full=True).clean


def _save_failing(root, monkeypatch, name: str, fake, size: int = SMALL) -> BaseException:
    real = getattr(os, name)
    monkeypatch.setattr(os, name, fake(real))
    try:
        with ModelStore(root) as store, pytest.raises(CasRepoError) as info:
            store.save_model(payload(2, size), metadata("m"))
    finally:
        monkeypatch.setattr(os, name, real)
    return info.value


@pytest.mark.parametrize("part,orphans", [("pack", 0), ("pack-dir", 1), ("log", 1)],
                         ids=["pack-file", "pack-folder-after-rename", "log-commit-temp-file"])
def test_fsync_eio_fails_the_save_cleanly(seeded, monkeypatch, part, orphans):
    hit = _where(seeded, part)
    calls = []

    def fake(real):
        def fsync(fd):
            if hit(fd):
                calls.append(fd)
                raise OSError(errno.EIO, "Input/output error")
            return real(fd)
        return fsync

    err = _save_failing(seeded, monkeypatch, "fsync", fake)
    assert calls, "the fault was never hit"
    assert "Input/output error" in str(err) and "not recorded" in str(err)
    _assert_clean_failure(seeded, err, orphans=orphans)


def _disk_full(hit, budget: int):
    """os.write that lets ``budget`` bytes through to matching descriptors, the last of them
    in a short write (as a real disk does), then raises ENOSPC."""
    state = {"left": budget, "hit": False}

    def fake(real):
        def write(fd, data):
            if not hit(fd):
                return real(fd, data)
            if state["left"] <= 0:
                state["hit"] = True
                raise OSError(errno.ENOSPC, "No space left on device")
            n = real(fd, bytes(memoryview(data)[: state["left"]]))
            state["left"] -= n
            return n
        return write
    return state, fake


@pytest.mark.parametrize("part,size,budget,orphans", [
    ("pack", SMALL, 10_000, 0),      # the pack runs out of space
    ("pack", LARGE, 4096, 0),        # a large pack, written through the O_DIRECT staging path
    ("log", SMALL, 100, 1),          # the pack fits, the log commit's temp file does not
], ids=["small-pack", "large-pack", "log-commit"])
def test_disk_full_mid_write_fails_the_save_cleanly(seeded, monkeypatch, part, size, budget, orphans):
    state, fake = _disk_full(_where(seeded, part), budget)
    err = _save_failing(seeded, monkeypatch, "write", fake, size)
    assert state["hit"]
    assert "disk is full" in str(err) and "nothing was recorded" in str(err)
    _assert_clean_failure(seeded, err, orphans=orphans)


def _log_dir_fsync_eio(root, monkeypatch) -> BaseException:
    hit = _where(root, "log-dir")

    def fake(real):
        def fsync(fd):
            if hit(fd):
                raise OSError(errno.EIO, "Input/output error")
            return real(fd)
        return fsync

    return _save_failing(root, monkeypatch, "fsync", fake)


def test_eio_on_the_log_folder_fsync_after_the_link_is_an_error_but_the_commit_stands(seeded, monkeypatch):
    """Once linked, a commit is visible to every process and cannot be taken back: the save
    reports the failed fsync, and the version is in the log (committed, unacknowledged —
    like a crash after the link). The store is consistent either way."""
    err = _log_dir_fsync_eio(seeded, monkeypatch)
    assert isinstance(err, StoreError) and "Input/output error" in str(err)
    report = check_store(seeded, full=True)
    assert report.clean and report.temp_files == () and report.orphan_packs == ()
    with ModelStore(seeded) as store:
        assert [md.version for md in store.history("m")] == [1, 2]
        assert fingerprint(store.load_model("m")[0]) == fingerprint(payload(2, SMALL))


def test_error_after_the_link_says_the_commit_is_published(seeded, monkeypatch):
    err = _log_dir_fsync_eio(seeded, monkeypatch)
    assert "not recorded" not in str(err) and "published" in str(err)  # a blind retry would save twice


def test_read_eio_during_load_is_an_error_not_garbage(seeded, monkeypatch):
    real = os.pread
    hit = _where(seeded, "pack")

    def failing_pread(fd, n, offset):
        if hit(fd):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", failing_pread)
    with ModelStore(seeded) as store, pytest.raises(StoreError, match="Input/output error"):
        store.load_model("m")
    monkeypatch.setattr(os, "pread", real)
    with ModelStore(seeded) as store:
        assert fingerprint(store.load_model("m")[0]) == fingerprint(payload(1, SMALL))


def test_read_eio_on_a_log_commit_is_an_error_and_the_next_read_sees_everything(seeded, monkeypatch):
    """A commit that cannot be read stops the fold where it is (a reader never skips a
    commit); once the disk answers again, the same process folds it in."""
    with ModelStore(seeded) as writer:
        writer.save_model(payload(2, SMALL), metadata("m"))
    real = os.read
    hit = _where(seeded, "log")

    def failing_read(fd, n):
        if hit(fd):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, n)

    with ModelStore(seeded) as store:
        monkeypatch.setattr(os, "read", failing_read)
        with pytest.raises(StoreError, match="Input/output error"):
            store.load_model("m")
        monkeypatch.setattr(os, "read", real)
        model, md = store.load_model("m")
        assert md.version == 2 and fingerprint(model) == fingerprint(payload(2, SMALL))
