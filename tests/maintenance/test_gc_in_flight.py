"""gc and fsck --repair against writes in flight: a running save's temp file is never taken,
whatever --grace says; a dead writer's is taken at once; a repack whose copy vanished
before its commit moves nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import numpy as np

from cas_repo import ModelStore, faults
from cas_repo.maintenance import collect, fsck, run_gc
from cas_repo.maintenance.collect import LOST

from ..robustness.harness import REPO_ROOT, run_worker, worker_env
from .conftest import NO_GRACE, age_store, locations, pack_path

GC_LOOP = """
import sys
from datetime import timedelta
from pathlib import Path
from cas_repo import ModelStore
from cas_repo.maintenance import run_gc
runs = 0
with ModelStore(sys.argv[1], backend_options={"fsync": False}) as store:
    while not Path(sys.argv[2]).exists() or runs == 0:
        run_gc(store, grace=timedelta(0))
        runs += 1
print(runs)
"""


def cli(root, *args: str) -> subprocess.CompletedProcess:
    """``cas-repo ARGS`` in another process, as a user on the same machine would run it."""
    return subprocess.run([sys.executable, "-m", "cas_repo.cli", "--repo", str(root), *args], cwd=REPO_ROOT,
                          env=worker_env(), capture_output=True, text=True, timeout=120, check=False)


def test_gc_and_fsck_repair_with_no_grace_leave_a_running_saves_temp_file_alone(store_dir, make_md, rng,
                                                                                monkeypatch):
    saved = {"w": rng.standard_normal(30_000)}
    runs = []

    def meanwhile(point: str) -> None:
        # The save's commit is written to its temp file and fsynced; link(2) comes next.
        if point == "before-link" and not runs:
            [temp] = (store_dir / "objects" / "log").glob(".tmp-*")
            for args in (("gc", "--grace", "0"), ("fsck", "--repair", "--grace", "0")):
                runs.append((args[0], cli(store_dir, *args), temp.exists()))

    with ModelStore(store_dir) as store:
        store.save_model({"w": rng.standard_normal(30_000)}, make_md("m"))
        monkeypatch.setattr(faults, "ARMED", ("before-link", 1))
        monkeypatch.setattr(faults, "crash_point", meanwhile)
        store.save_model(saved, make_md("m"))  # must not fail with "No such file or directory"
        monkeypatch.undo()
        assert [(what, done.returncode, kept) for what, done, kept in runs] == [("gc", 0, True), ("fsck", 0, True)]
        assert [md.version for md in store.history("m")] == [1, 2]
        assert np.array_equal(store.load_model("m", 2)[0]["w"], saved["w"])
        assert fsck(store, grace=NO_GRACE).findings == ()


def test_gc_with_no_grace_takes_a_dead_writers_temp_file_at_once(store, store_dir, make_md, rng):
    store.save_model({"w": rng.standard_normal(10_000)}, make_md("m"))
    assert run_worker("save", store_dir, "m", 100_000, 3, crash_at="after-temp-write").returncode == -9
    [temp] = (store_dir / "objects").rglob(".tmp-*")
    [finding] = fsck(store, grace=NO_GRACE).findings
    assert finding.code == "temp-file"
    report = run_gc(store, grace=NO_GRACE)
    assert [t.key for t in report.temp_removed] == [str(temp.relative_to(store_dir / "objects"))]
    assert not temp.exists() and fsck(store, grace=NO_GRACE).findings == ()


def test_saves_racing_a_gc_loop_with_no_grace_all_succeed(store_dir, tmp_path, make_md, rng):
    stop = tmp_path / "stop"
    loop = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(store_dir), str(stop)], cwd=REPO_ROOT,
                            env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        models = [{"w": rng.standard_normal(20_000), "i": i} for i in range(25)]
        with ModelStore(store_dir) as store:
            for i, model in enumerate(models):
                store.save_model(model, make_md(f"m{i % 3}"))
    finally:
        stop.touch()
        out, err = loop.communicate(timeout=120)
    assert loop.returncode == 0, err
    assert int(out) >= 1
    with ModelStore(store_dir) as store:
        for i, model in enumerate(models):
            assert np.array_equal(store.load_model(f"m{i % 3}", i // 3 + 1)[0]["w"], model["w"])
        run_gc(store, grace=NO_GRACE)
        assert fsck(store, full=True, grace=NO_GRACE).findings == ()
    assert list((store_dir / "objects").rglob(".tmp-*")) == []


def test_a_repack_whose_copy_vanished_before_its_commit_moves_nothing(store, store_dir, make_md, rng,
                                                                      monkeypatch):
    shared = rng.standard_normal(20_000)
    store.save_model({"s": shared, "own": rng.standard_normal(80_000)}, make_md("a"))
    store.save_model({"s": shared}, make_md("b"))  # dedups onto a's pack
    store.delete_model("a")
    old = locations(store, "a", 1)[0].pack
    age_store(store_dir, 2)
    real_copy = collect.copy_live

    def copy_then_lose_it(*args, **kwargs):
        # As a `gc --no-commit` elsewhere would, had the copy taken longer than its grace.
        copies, written, skipped = real_copy(*args, **kwargs)
        for loc in written:
            pack_path(store_dir, loc.pack).unlink(missing_ok=True)
        return copies, written, skipped

    monkeypatch.setattr(collect, "copy_live", copy_then_lose_it)
    report = run_gc(store, grace=timedelta(hours=1), purge_older_than=NO_GRACE)
    monkeypatch.undo()
    assert report.repacked == () and report.skipped == ((old.hex, LOST),)
    assert pack_path(store_dir, old).exists()
    assert np.array_equal(store.load_model("b")[0]["s"], shared)
    again = run_gc(store, grace=timedelta(hours=1))
    assert [p.pack for p in again.repacked] == [old.hex] and not pack_path(store_dir, old).exists()
    assert np.array_equal(store.load_model("b")[0]["s"], shared) and fsck(store, full=True).findings == ()
