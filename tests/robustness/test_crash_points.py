"""A save, a delete, a rollback, an index catch-up: killed (SIGKILL) at each step, the store stays whole.

Write order under test: pack bytes → temp file fsync → rename → folder fsync → log commit
to a fsynced temp file → ``link(2)`` to the next log position → folder fsync → the
acknowledgement. Before the link a crash leaves the previous state plus unreferenced
debris (temp files, orphan packs); from the link on, the new version is complete and
every process sees it. The catalog index is derived: a catch-up killed mid-transaction
is rolled back by DuckDB, and the next session folds those commits again.
"""

from __future__ import annotations

import os
import signal

import pytest

from cas_repo import ModelDeletedError, ModelStore

from .consistency import check_store
from .harness import acks, run_worker
from .workers import fingerprint, metadata, payload

SMALL = 100_000
LARGE = 6 << 20  # past the O_DIRECT threshold of a local pack write

# (operation, crash point, temp files left, orphan packs left, committed)
CASES = [
    ("save", "after-temp-write", 1, 0, False),
    ("save", "after-fsync", 1, 0, False),
    ("save", "after-rename", 0, 1, False),
    ("save", "objects-written", 0, 1, False),
    ("save", "before-link", 1, 1, False),     # the pack, and the commit's temp file in objects/log/
    ("save", "after-commit", 0, 0, True),     # linked: committed, though never acknowledged
    ("save-large", "after-temp-write", 1, 0, False),
    ("save-large", "after-rename", 0, 1, False),
    ("save-large", "before-link", 1, 1, False),
    ("save-large", "after-commit", 0, 0, True),
    ("delete", "before-link", 1, 0, False),   # an event writes no pack: only its commit
    ("delete", "after-commit", 0, 0, True),
    ("rollback", "before-link", 1, 0, False),
    ("rollback", "after-commit", 0, 0, True),
    ("history", "inside-transaction", 0, 0, False),  # the index's catch-up; the log is untouched
]


@pytest.fixture
def seeded(tmp_path):
    """A store holding m@1, written in this process (its index not yet built)."""
    root = tmp_path / "cas"
    first = payload(1, SMALL)
    with ModelStore(root) as store:
        store.save_model(first, metadata("m"))
    return root, fingerprint(first)


def _run(op: str, root, point: str):
    if op == "delete":
        return run_worker("delete", root, "m", crash_at=point)
    if op == "rollback":
        return run_worker("rollback", root, "m", 1, crash_at=point)
    if op == "history":
        return run_worker("history", root, "m", crash_at=point)
    return run_worker("save", root, "m", LARGE if op == "save-large" else SMALL, 2, crash_at=point)


@pytest.mark.parametrize("op,point,temps,orphans,committed", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_crash_at_each_point_leaves_store_consistent(seeded, op, point, temps, orphans, committed):
    root, first_fp = seeded
    proc = _run(op, root, point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # the crash point was reached
    assert acks(proc.stdout) == []  # killed before it could acknowledge

    # Mechanisms: objects before commit and a create-only link of a complete, fsynced file
    # (no half commit, no commit naming a missing pack); the index rebuilt from the log.
    report = check_store(root, full=True)
    assert report.clean, report.problems
    assert len(report.temp_files) == temps, report.temp_files
    assert len(report.orphan_packs) == orphans
    if point == "before-link":
        assert all(t.startswith("log/") for t in report.temp_files)

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
            model, md = store.load_model("m")
            assert md.version == versions[-1]
            if op == "rollback":
                assert fingerprint(model) == first_fp
            elif committed:
                assert fingerprint(model) == fingerprint(payload(2, model["size"]))
        # The store is usable: the next save takes the next version and everything checks out.
        nxt = payload(3, SMALL)
        md = metadata("m")
        store.save_model(nxt, md)
        assert md.version == versions[-1] + 1
        assert fingerprint(store.load_model("m")[0]) == fingerprint(nxt)
    after = check_store(root, full=True)
    assert after.clean, after.problems


def test_index_session_killed_after_its_commit_is_replayed(seeded):
    """The index's catch-up committed (in DuckDB's write-ahead log), then the process died
    before DuckDB checkpointed: the next session replays the WAL and nothing is lost."""
    root, _ = seeded
    with ModelStore(root) as store:
        store.history("m")
        store.save_model(payload(2, SMALL), metadata("m"))
        wal = store.catalog.path.with_name(store.catalog.path.name + ".wal")
    proc = run_worker("index-and-die", root)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.split() == ["indexed"], proc.stderr
    assert wal.stat().st_size > 0
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == [1, 2]
    assert not wal.exists()
    assert not [p for p in wal.parent.iterdir() if "damaged" in p.name]  # replayed, not rebuilt
    assert check_store(root, full=True).clean


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
def test_write_order_is_pack_fsync_rename_dirsync_then_commit_fsync_link_dirsync(tmp_path, monkeypatch, size):
    """What SIGKILL cannot show (a power cut drops unsynced pages): each pack is fsynced,
    renamed and its folder fsynced before the log commit, whose own bytes are fsynced
    before the link that publishes them, and whose folder is fsynced after it."""
    root = tmp_path / "cas"
    store = ModelStore(root)
    store.save_model(payload(0, 1000), metadata("warm"))  # shard and log folders exist already
    log: list[tuple[str, str]] = []
    real_fsync, real_rename, real_link = os.fsync, os.rename, os.link
    objects = str(root / "objects")

    def where(fd):
        return os.readlink(f"/proc/self/fd/{fd}")

    def fsync(fd):
        if where(fd).startswith(objects):
            log.append(("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file", where(fd)))
        return real_fsync(fd)

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        log.append(("rename", os.path.join(where(dst_dir_fd), dst)))
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def link(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
        log.append(("link", os.path.join(where(dst_dir_fd), dst)))
        return real_link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "link", link)
    store.save_model(payload(1, size), metadata("m"))
    monkeypatch.undo()
    store.close()

    kinds = [k for k, _ in log]
    logdir = os.path.join(objects, "log")
    assert kinds.count("rename") == 1 and kinds.count("link") == 1, log
    r, k = kinds.index("rename"), kinds.index("link")
    assert kinds[r - 1] == "fsync-file" and "/packs/" in log[r - 1][1]       # pack bytes durable, then visible
    assert kinds[r + 1] == "fsync-dir" and log[r + 1][1] == os.path.dirname(log[r][1])  # its name durable
    assert r < k                                                              # objects before the commit
    assert kinds[k - 1] == "fsync-file" and os.path.dirname(log[k - 1][1]) == logdir  # commit bytes durable
    assert log[k][1] == os.path.join(logdir, f"{2:020d}")
    assert log[k + 1] == ("fsync-dir", logdir) and k + 2 == len(log)        # the link durable, then the ack
