"""Many processes on one store: no version lost or duplicated, readers never see a torn state.

Every store here is in the default shared mode: each catalog session takes an
inter-process flock, opens DuckDB, and closes it again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from cas_repo import CatalogLockedError, ModelStore
from cas_repo.location import CHUNK, MANIFEST, RECORD
from cas_repo.repository import PREWRITE_BYTES

from .consistency import check_store
from .harness import acks, start_worker, worker_env
from .workers import fingerprint, metadata, payload


def _run_together(root, tmp_path, argvs, timeout=240):
    """Start workers, wait until each is ready, open the gate, and collect their output."""
    gate = tmp_path / "gate"
    env = worker_env(CAS_TEST_GATE=str(gate))
    procs = [start_worker(*argv, env=env) for argv in argvs]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    gate.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        outs.append((p.returncode, "ready\n" + out, err))
    return outs


@pytest.mark.slow
def test_8_processes_x_25_saves_to_one_model_give_200_distinct_versions(tmp_path):
    root = tmp_path / "cas"
    ModelStore(root).close()
    outs = _run_together(root, tmp_path, [("saver", root, "m", 25, 1000 * w, 2000) for w in range(8)])
    for code, out, err in outs:
        assert code == 0 and "Error" not in err, err  # no lock error leaked, nothing retried out
    acked = [a for _, out, _ in outs for a in acks(out)]
    versions = [int(v) for v, _ in acked]
    assert sorted(versions) == list(range(1, 201))
    by_version = {int(v): fp for v, fp in acked}
    assert len(set(by_version.values())) == 200
    with ModelStore(root, exclusive=True) as store:
        assert [md.version for md in store.history("m")] == list(range(1, 201))
        for v, fp in by_version.items():
            assert fingerprint(store.load_model("m", v)[0]) == fp
    assert check_store(root).clean


def _pack_entries(root):
    """Every (digest, kind) in every pack on disk, counted: physical copies, not catalog rows."""
    from cas_repo.objects import LocalBackend, ObjectStore

    objects = ObjectStore(LocalBackend(root / "objects"))
    return Counter((l.digest.hex, l.kind) for d, _ in objects.list_packs() for l in objects.pack_index(d))


@pytest.mark.parametrize("size,procs", [
    (1 << 20, 8),
    pytest.param(PREWRITE_BYTES + (1 << 20), 4, marks=pytest.mark.slow),
], ids=["1MB-x8", "9MB-prewritten-x4"])
def test_processes_saving_identical_bytes_store_one_set_of_objects(tmp_path, size, procs):
    root = tmp_path / "cas"
    ModelStore(root).close()
    outs = _run_together(root, tmp_path, [("saver", root, "m", 1, "7=", size) for _ in range(procs)])
    assert all(code == 0 for code, _, _ in outs), [err for _, _, err in outs]
    acked = [a for _, out, _ in outs for a in acks(out)]
    assert sorted(int(v) for v, _ in acked) == list(range(1, procs + 1))
    with ModelStore(root) as store:
        history = store.history("m")
        assert len({md.digest for md in history}) == 1
        with store.catalog.session() as s:
            rows = Counter(k for (k,) in s.con.execute("SELECT kind FROM objects").fetchall())
            chunks = s.manifest_chunk_digests(history[0].digest)
    assert rows[MANIFEST] == 1 and rows[RECORD] == procs and rows[CHUNK] == len(set(chunks))
    physical = _pack_entries(root)
    copies = Counter(n for (d, kind), n in physical.items() if kind == CHUNK)
    report = check_store(root, full=True)
    assert report.clean, report.problems
    if size < PREWRITE_BYTES:
        # Chunks are chosen and written under the catalog lock: exactly one physical copy.
        assert set(copies) == {1} and report.orphan_packs == ()
    else:
        # Large saves write chunks before taking the lock (so they do not stall other
        # writers); racing savers may each write a copy. The catalog still names one,
        # and the others are unreferenced packs, which gc reclaims.
        assert max(copies) <= procs
        assert len(report.orphan_packs) == max(copies) - 1


@pytest.mark.slow
def test_readers_during_writers_succeed_or_wait_and_never_see_garbage(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 20_000), metadata("m"))
    stop = tmp_path / "stop"
    readers = [start_worker("reader", root, "m", stop) for _ in range(2)]
    for r in readers:
        assert r.stdout.readline().strip() == "ready"
    outs = _run_together(root, tmp_path, [("saver", root, "m", 8, 10_000 * w, 20_000 + 5_000 * w)
                                          for w in range(3)])
    stop.touch()
    assert all(code == 0 for code, _, _ in outs), [err for _, _, err in outs]
    for r in readers:
        out, err = r.communicate(timeout=60)
        assert r.returncode == 0, err
        assert int(out.split()[-1]) >= 3  # it really read while the writers ran
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == list(range(1, 26))


def test_threads_sharing_one_store_lose_nothing(tmp_path):
    with ModelStore(tmp_path / "cas") as store:
        def work(t):
            for i in range(4):
                store.save_model(payload(100 * t + i, 3000), metadata("m"))
        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [md.version for md in store.history("m")] == list(range(1, 13))
        seeds = {store.load_model("m", v)[0]["seed"] for v in range(1, 13)}
        assert seeds == {100 * t + i for t in range(3) for i in range(4)}


def test_holder_killed_with_sigkill_releases_the_lock_at_once(tmp_path):
    root = tmp_path / "cas"
    ModelStore(root).close()
    holder = start_worker("hold-lock", root, 60)
    assert holder.stdout.readline().split() == ["holding", str(holder.pid)]
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    t0 = time.monotonic()
    with ModelStore(root, lock_timeout=5) as store:
        store.save_model(payload(1, 1000), metadata("m"))
    assert time.monotonic() - t0 < 2  # no stale-lock wait: the kernel dropped the flock
    assert check_store(root).clean


def test_live_holder_is_never_broken(tmp_path):
    root = tmp_path / "cas"
    ModelStore(root).close()
    holder = start_worker("hold-lock", root, 3)
    assert holder.stdout.readline().split() == ["holding", str(holder.pid)]
    t0 = time.monotonic()
    with pytest.raises(CatalogLockedError) as info:
        ModelStore(root, lock_timeout=0.5)
    assert 0.5 <= time.monotonic() - t0 < 2.5
    assert f"pid {holder.pid}" in str(info.value) and "lock_timeout" in str(info.value)
    assert holder.poll() is None  # still alive, still holding
    # A patient opener waits for the holder to finish, then proceeds.
    with ModelStore(root, lock_timeout=30) as store:
        assert holder.poll() is not None or holder.stdout.readline().strip() == "released"
        store.save_model(payload(1, 1000), metadata("m"))
    out, err = holder.communicate(timeout=30)
    assert holder.returncode == 0, err
