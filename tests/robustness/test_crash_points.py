"""A save, a delete: killed (SIGKILL) at each step of the write path, the store stays consistent.

Write order under test: pack bytes → temp file fsync → rename → directory fsync → catalog
transaction → commit → acknowledgement. Before the commit a crash leaves the previous
state plus unreferenced debris (temp files, orphan packs); after it, the new version is
complete. Either way every catalog row finds its object and the next save works.
"""

from __future__ import annotations

import signal

import pytest

from cas_repo import ModelDeletedError, ModelStore
from cas_repo.repository import PREWRITE_BYTES

from .consistency import check_store
from .harness import acks, run_worker
from .workers import fingerprint, metadata, payload

SMALL = 100_000
LARGE = PREWRITE_BYTES + (4 << 20)  # chunks go in their own pack before the lock is taken

# (operation, crash point, temp files left, orphan packs left, committed)
CASES = [
    ("save-small", "after-temp-write", 1, 0, False),
    ("save-small", "after-fsync", 1, 0, False),
    ("save-small", "after-rename", 0, 1, False),
    ("save-small", "objects-written", 0, 1, False),
    ("save-small", "inside-transaction", 0, 1, False),
    ("save-small", "after-commit", 0, 0, True),
    ("save-large", "after-temp-write", 1, 0, False),
    ("save-large", "after-rename", 0, 1, False),         # chunks published, record not yet
    ("save-large", "after-temp-write#2", 1, 1, False),   # record pack half written
    ("save-large", "after-rename#2", 0, 2, False),
    ("save-large", "inside-transaction", 0, 2, False),
    ("save-large", "after-commit", 0, 0, True),
    ("delete", "after-fsync", 1, 0, False),
    ("delete", "after-rename", 0, 1, False),
    ("delete", "inside-transaction", 0, 1, False),
    ("delete", "after-commit", 0, 0, True),
]


@pytest.fixture
def seeded(tmp_path):
    """A store holding m@1, written in this process."""
    root = tmp_path / "cas"
    first = payload(1, SMALL)
    with ModelStore(root) as store:
        store.save_model(first, metadata("m"))
    return root, fingerprint(first)


@pytest.mark.parametrize("op,point,temps,orphans,committed", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_crash_at_each_point_leaves_store_consistent(seeded, op, point, temps, orphans, committed):
    root, first_fp = seeded
    if op == "delete":
        proc = run_worker("delete", root, "m", crash_at=point)
    else:
        proc = run_worker("save", root, "m", LARGE if op == "save-large" else SMALL, 2, crash_at=point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert acks(proc.stdout) == []  # killed before it could acknowledge

    report = check_store(root, full=True)
    assert report.clean, report.problems
    assert len(report.temp_files) == temps
    assert len(report.orphan_packs) == orphans

    with ModelStore(root) as store:
        assert fingerprint(store.load_model("m", version=1)[0]) == first_fp
        versions = [md.version for md in store.history("m")]
        if op == "delete":
            assert versions == [1]
            if committed:
                with pytest.raises(ModelDeletedError):
                    store.load_model("m")
                store.undelete_model("m")
            else:
                assert store.load_model("m")[1].version == 1
        else:
            assert versions == ([1, 2] if committed else [1])
            if committed:
                model, md = store.load_model("m")
                assert (md.version, fingerprint(model)) == (2, fingerprint(payload(2, model["size"])))
        # The store is usable: the next save takes the next version and everything checks out.
        nxt = payload(3, SMALL)
        md = metadata("m")
        store.save_model(nxt, md)
        assert md.version == versions[-1] + 1
        assert fingerprint(store.load_model("m")[0]) == fingerprint(nxt)
    after = check_store(root, full=True)
    assert after.clean, after.problems


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
def test_write_order_is_data_fsync_rename_dirsync_then_commit(tmp_path, monkeypatch, size):
    """What SIGKILL cannot show (a power cut drops unsynced pages): each pack is fsynced,
    renamed and its folder fsynced before the catalog transaction that names it begins."""
    import os

    from cas_repo.catalog.catalog import Session

    root = tmp_path / "cas"
    store = ModelStore(root)
    log: list[tuple[str, str]] = []
    real_fsync, real_rename, real_commit = os.fsync, os.rename, Session.commit_save

    def where(fd):
        return os.readlink(f"/proc/self/fd/{fd}")

    def fsync(fd):
        if where(fd).startswith(str(root / "objects")):
            log.append(("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file", where(fd)))
        return real_fsync(fd)

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        log.append(("rename", os.path.join(where(dst_dir_fd), dst) if dst_dir_fd is not None else str(dst)))
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def commit_save(self, c):
        log.append(("commit", c.model_id))
        return real_commit(self, c)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(Session, "commit_save", commit_save)
    store.save_model(payload(1, size), metadata("m"))
    store.close()

    kinds = [k for k, _ in log]
    assert kinds[-1] == "commit" and kinds.count("commit") == 1
    renames = [i for i, k in enumerate(kinds) if k == "rename"]
    assert len(renames) == (2 if size == LARGE else 1)  # prewritten chunks, then the record pack
    for i in renames:
        assert kinds[i - 1] == "fsync-file"                      # data durable before it is visible
        assert kinds[i + 1] == "fsync-dir"                       # the name durable before the commit
        assert log[i + 1][1] == os.path.dirname(log[i][1])
