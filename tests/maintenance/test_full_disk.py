"""A store on a disk that fills up, for real (a small tmpfs): the failure says what to do,
nothing stored before is lost, and ``gc --no-commit`` frees space when no commit fits."""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.cli import main
from cas_repo.errors import DiskFullError, StoreError, StoreFullError
from cas_repo.maintenance import fsck, run_gc

from ..robustness.harness import run_worker
from .conftest import NO_GRACE, age, locations, pack_path
from .test_reclaim import orphan_pack

HOUR = timedelta(hours=1)


def temp_files(root):
    return sorted(p.name for p in (root / "objects").rglob(".tmp-*"))


def leftover_pack(store, root, rng, make_md):
    """A pack a committed gc forgot but did not delete (stopped between its commit and the files)."""
    store.save_model({"w": rng.standard_normal(50_000)}, make_md("scratch"))
    path = pack_path(root, locations(store, "scratch")[0].pack)
    store.delete_model("scratch")
    kept = path.read_bytes()
    run_gc(store, grace=HOUR, purge_older_than=NO_GRACE)
    assert not path.exists()
    path.write_bytes(kept)  # the file as that gc left it
    os.chmod(path, 0o444)
    return path


def test_a_full_store_disk_fails_clearly_loses_nothing_and_gc_no_commit_frees_it(
        small_disk, tmp_path, make_md, rng, capsys):
    root, index = small_disk.path / "cas", tmp_path / "index" / "catalog.duckdb"
    with ModelStore(root, catalog=index) as store:
        saved = {}
        for i in range(3):
            saved["a", i + 1] = {"w": rng.standard_normal(100_000), "i": i}
            store.save_model(saved["a", i + 1], make_md("a"))
        saved["b", 1] = {"w": rng.standard_normal(400_000)}
        store.save_model(saved["b", 1], make_md("b"))
        leftover = leftover_pack(store, root, rng, make_md)
        old_orphan = orphan_pack(store, root, rng.bytes(300_000))
        age(old_orphan, 2)
        fresh_orphan = orphan_pack(store, root, rng.bytes(200_000))
        # A save killed while writing its pack: a dead process's temp file.
        assert run_worker("save", root, "m", 100_000, 9, crash_at="after-temp-write").returncode == -9
        [dead_temp] = temp_files(root)
        committed = {p for p in (root / "objects" / "packs").rglob("*")
                     if p.is_file() and not p.name.startswith(".tmp-")} - {leftover, old_orphan, fresh_orphan}

        small_disk.fill()
        with pytest.raises(StoreFullError) as failed:
            store.save_model({"w": rng.standard_normal(100_000)}, make_md("a"))
        message = str(failed.value)
        assert isinstance(failed.value, StoreError) and isinstance(failed.value, DiskFullError)
        for needed in ("No space left on device", "nothing was recorded", "gc --no-commit", "catalog.duckdb",
                       ".tmp-*", "/checkpoints/", "Never delete anything under", "/log/", "/packs/",
                       "When the disk is full"):
            assert needed in message, needed
        with pytest.raises(StoreFullError):
            store.delete_model("b")  # a commit: no room for it either
        assert temp_files(root) == [dead_temp]  # the failed writes took their temp files with them
        for (model_id, version), model in saved.items():
            assert np.array_equal(store.load_model(model_id, version)[0]["w"], model["w"])

        code = main(["--repo", str(root), "--catalog", str(index), "gc", "--no-commit", "--grace", "0"])
        out = capsys.readouterr().out
        assert code == 0 and "no log commit written" in out and "3 files" in out
        assert "kept: 1 packs no commit mentions" in out  # the fresh orphan: a save may still commit it
        assert not leftover.exists() and not old_orphan.exists() and temp_files(root) == []
        assert fresh_orphan.exists() and [p for p in committed if not p.exists()] == []

        # Room for commits again: the ordinary way out works.
        store.delete_model("b")
        gc = run_gc(store, grace=HOUR, purge_older_than=NO_GRACE)
        assert gc.purged == (("b", 1),) and gc.freed_bytes > 1_000_000
        store.save_model(saved["a", 1], make_md("a"))
        small_disk.empty()
        report = fsck(store, full=True)
        assert report.clean and report.findings == (), report.findings
        for version, model in enumerate([saved["a", 1], saved["a", 2], saved["a", 3], saved["a", 1]], 1):
            assert np.array_equal(store.load_model("a", version)[0]["w"], model["w"])
