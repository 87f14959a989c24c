"""I/O failing under a save — fsync EIO, a full disk mid-write — fails cleanly and leaves no trace.

The faults are injected in-process at the OS boundary (``os.fsync``/``os.write``, only
for descriptors inside the store) so the real store code runs unchanged around them.
"""

from __future__ import annotations

import errno
import os

import pytest

from cas_repo import CasRepoError, ModelNotFoundError, ModelStore, StoreError
from cas_repo.repository import PREWRITE_BYTES

from .consistency import check_store
from .workers import fingerprint, metadata, payload


def _in_store(fd: int, root) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(root))
    except OSError:
        return False


@pytest.fixture
def seeded(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 50_000), metadata("m"))
    return root


def _assert_clean_failure(root, exc_info, *, orphans_allowed: bool) -> None:
    assert isinstance(exc_info.value, CasRepoError)
    assert isinstance(exc_info.value, StoreError)
    report = check_store(root, full=True)
    assert report.clean, report.problems
    assert report.temp_files == ()
    if not orphans_allowed:
        assert report.orphan_packs == ()
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == [1]  # no row for the failed save
        with pytest.raises(ModelNotFoundError):
            store.get_model_metadata("other")
        # usable afterwards: the same save now succeeds
        model = payload(2, 50_000)
        md = metadata("m")
        store.save_model(model, md)
        assert md.version == 2
        assert fingerprint(store.load_model("m")[0]) == fingerprint(model)
    assert check_store(root, full=True).clean


def test_fsync_eio_fails_the_save_cleanly(seeded, monkeypatch):
    real = os.fsync
    calls = []

    def failing_fsync(fd):
        if _in_store(fd, seeded):
            calls.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with ModelStore(seeded) as store, pytest.raises(CasRepoError) as info:
        store.save_model(payload(2, 50_000), metadata("m"))
    monkeypatch.setattr(os, "fsync", real)
    assert calls, "the fault was never hit"
    assert "Input/output error" in str(info.value) and "not recorded" in str(info.value)
    _assert_clean_failure(seeded, info, orphans_allowed=False)


def test_directory_fsync_eio_after_rename_records_nothing(seeded, monkeypatch):
    """The pack is already renamed into place when the directory fsync fails: an orphan, no row."""
    real = os.fsync

    def failing_dir_fsync(fd):
        if _in_store(fd, seeded) and os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", failing_dir_fsync)
    with ModelStore(seeded) as store, pytest.raises(CasRepoError) as info:
        store.save_model(payload(2, 50_000), metadata("m"))
    monkeypatch.setattr(os, "fsync", real)
    _assert_clean_failure(seeded, info, orphans_allowed=True)


@pytest.mark.parametrize("size,budget", [
    (50_000, 10_000),                     # small save: the only pack runs out of space
    (PREWRITE_BYTES + (2 << 20), 4096),   # large save: the first (chunk) pack fails
    (PREWRITE_BYTES + (2 << 20), None),   # large save: chunks fit, the record pack fails
], ids=["small", "large-chunks", "large-record"])
def test_disk_full_mid_write_fails_the_save_cleanly(seeded, monkeypatch, size, budget):
    real = os.write
    state = {"left": budget, "first": None, "hit": False}

    def full_disk_write(fd, data):
        if not _in_store(fd, seeded):
            return real(fd, data)
        if state["left"] is None:  # the first pack (the chunks) fits, the next one does not
            target = os.readlink(f"/proc/self/fd/{fd}")
            if state["first"] in (None, target):
                state["first"] = target
                return real(fd, data)
            state["left"] = 100
        if state["left"] <= 0:
            state["hit"] = True
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(memoryview(data)[: state["left"]]))  # a short write first, as a real disk does
        state["left"] -= n
        return n

    monkeypatch.setattr(os, "write", full_disk_write)
    with ModelStore(seeded) as store, pytest.raises(CasRepoError) as info:
        store.save_model(payload(2, size), metadata("m"))
    monkeypatch.setattr(os, "write", real)
    assert state["hit"]
    assert "disk is full" in str(info.value) and "nothing was recorded" in str(info.value)
    if budget is None:
        assert len(check_store(seeded).orphan_packs) == 1  # the chunk pack, which nothing references
    _assert_clean_failure(seeded, info, orphans_allowed=budget is None)


def test_read_eio_during_load_is_an_error_not_garbage(seeded, monkeypatch):
    real = os.pread

    def failing_pread(fd, n, offset):
        if _in_store(fd, seeded):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", failing_pread)
    with ModelStore(seeded) as store, pytest.raises(StoreError, match="Input/output error"):
        store.load_model("m")
    monkeypatch.setattr(os, "pread", real)
    with ModelStore(seeded) as store:
        assert fingerprint(store.load_model("m")[0]) == fingerprint(payload(1, 50_000))
