"""The catalog index on a disk that fills up, for real (a small tmpfs).

A full disk is not damage: DuckDB says "Failed to commit" (a commit that did not fit),
or "Checkpoint failed … The database has been invalidated" (a WAL left by a session
whose closing checkpoint did not fit, absorbed by the next). Neither may be reported as a
damaged index or a conflicting writer, and the index must never be moved aside for it:
it is intact, and works again, with every row, once there is room.
"""

from __future__ import annotations

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.errors import CatalogCorruptError, CatalogError, CatalogFullError, DiskFullError


def set_aside(index):
    return sorted(p.name for p in index.parent.iterdir() if ".damaged-" in p.name)


def fill_store(store, make_md, start: int, n: int) -> None:
    for i in range(start, start + n):
        store.save_model({"w": np.full(50, i)}, make_md(f"m{i % 7}", IC=0.001 * i))


def full_errors(store, tries: int = 3) -> list[CatalogError]:
    """Ask the index ``tries`` times; the errors it raised (each must be a full-disk one)."""
    errors = []
    for _ in range(tries):
        try:
            store.history("m0")
        except CatalogError as exc:
            errors.append(exc)
    return errors


# 0: the fold's commit does not fit. 1 MiB: it fits, the closing checkpoint does not, and
# the WAL it leaves is absorbed (a CHECKPOINT that fails) by the next session.
@pytest.mark.parametrize("leave", [0, 1 << 20], ids=["no-room", "room-for-the-wal-only"])
def test_an_index_on_a_full_disk_says_so_and_is_never_set_aside(small_disk, tmp_path, make_md, leave):
    index = small_disk.path / "index" / "catalog.duckdb"
    with ModelStore(tmp_path / "cas", catalog=index, backend_options={"fsync": False}) as store:
        fill_store(store, make_md, 0, 5)
        assert len(store.history("m0")) == 1  # the index is built
        inode = index.stat().st_ino
        small_disk.fill(leave=leave)
        fill_store(store, make_md, 5, 400)  # the store's own disk has room; the index must fold these
        errors = full_errors(store)
        assert errors, "the index should not fit"
        for exc in errors:
            assert isinstance(exc, CatalogFullError) and isinstance(exc, DiskFullError)
            assert not isinstance(exc, CatalogCorruptError)
            text = str(exc)
            assert "is full" in text and "not damaged" in text and "No space left on device" in text
            assert "conflicted" not in text and "rebuild-catalog" not in text and "gc --no-commit" in text
        assert set_aside(index) == []

        small_disk.empty()
        assert [md.version for md in store.history("m0")] == list(range(1, 59))
        assert sum(len(store.history(f"m{i}")) for i in range(7)) == 405
        assert index.stat().st_ino == inode and set_aside(index) == []


def test_a_new_index_on_a_full_disk_leaves_no_stub(small_disk, tmp_path, make_md):
    index = small_disk.path / "index" / "catalog.duckdb"
    index.parent.mkdir()
    with ModelStore(tmp_path / "cas", catalog=index, backend_options={"fsync": False}) as store:
        fill_store(store, make_md, 0, 20)
        small_disk.fill()
        errors = full_errors(store)
        assert errors and all(isinstance(e, CatalogFullError) for e in errors)
        # DuckDB began the file and could not finish it; an empty stub would read as damage later.
        assert not index.exists() and set_aside(index) == []
        small_disk.empty()
        assert len(store.history("m0")) == 3 and set_aside(index) == []

