"""Many processes on one store: versions 1..n, no stale reads, no torn reads, no lock on the save path.

Every change is a commit created at the next position of the log with a create-only
write (``link(2)`` of a fsynced temp file: EEXIST means another writer took the
position, so the loser folds the winner's commit in and builds its own again). Every
read first folds in the commits made since its last look; the catalog index catches up
from the log at the start of each of its sessions.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from datetime import timedelta

from cas_repo import ModelStore
from cas_repo.location import CHUNK
from cas_repo.manifest import Manifest
from cas_repo.objects import LocalBackend, ObjectStore

from .consistency import check_store, fold_from_scratch
from .harness import acks, start_worker, worker_env
from .workers import fingerprint, metadata, payload, view


def _run_together(tmp_path, argvs, timeout=240):
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
        outs.append((p.returncode, out, err))
    return outs


def _versions_are_1_to_n(acked: list[list[str]]) -> dict[str, dict[int, str]]:
    """``acked`` rows (model, version, fingerprint) grouped by model; asserts 1..n, no duplicate."""
    by_model: dict[str, list[tuple[int, str]]] = {}
    for m, v, fp in acked:
        by_model.setdefault(m, []).append((int(v), fp))
    for m, got in by_model.items():
        assert sorted(v for v, _ in got) == list(range(1, len(got) + 1)), m
    return {m: dict(got) for m, got in by_model.items()}


def test_processes_saving_to_one_model_and_to_their_own_get_versions_1_to_n(tmp_path):
    # Mechanism: the create-only commit (a lost race is refolded and rebuilt with the next
    # version). Without it two writers take one version, or one overwrites the other's
    # acknowledged commit: a duplicate or a missing number below.
    root = tmp_path / "cas"
    ModelStore(root).close()
    procs, saves = 5, 16
    outs = _run_together(tmp_path, [("saver", root, f"shared,own{w}", saves, 1000 * w, 2000) for w in range(procs)])
    for code, _, err in outs:
        assert code == 0 and "Error" not in err, err
    by_model = _versions_are_1_to_n([a for _, out, _ in outs for a in acks(out)])
    assert len(by_model["shared"]) == procs * saves // 2
    assert all(len(by_model[f"own{w}"]) == saves // 2 for w in range(procs))
    assert len({fp for got in by_model.values() for fp in got.values()}) == procs * saves
    with ModelStore(root) as store:
        for m, got in by_model.items():
            assert [md.version for md in store.history(m)] == sorted(got)
            for v, fp in got.items():
                assert fingerprint(store.load_model(m, v)[0]) == fp
    assert check_store(root).clean


class _Overwrite(LocalBackend):
    """A backend whose ``create`` overwrites, as a plain atomic rename would: no lost race."""

    def create(self, key, data):
        self.put(key, [data]) or self._replace(key, data)
        return True

    def _replace(self, key, data):
        path = self._path(key)
        tmp = path.with_name(".tmp-overwrite")
        tmp.write_bytes(data)
        os.replace(tmp, path)


_TWO_MODELS = (payload(1, 3000), payload(2, 3000))


def _race_two_stores(root, backend_cls=None, models=_TWO_MODELS) -> tuple[list[tuple[int, str]], list[bool]]:
    """Store B builds its commit on the state before A's save lands: B's first ``create``
    runs A's whole save just before it (B's pack is written by then). Returns what each
    save acknowledged (A's first) and what B's ``create`` calls returned."""
    a, b = ModelStore(root), ModelStore(root)
    if backend_cls is not None:
        for s in (a, b):
            s.objects.backend.__class__ = backend_cls  # the log writes through the same backend
    real_create = b.ledger.log.backend.create
    acked: list[tuple[int, str]] = []
    outcomes: list[bool] = []

    def create(key, data):
        if not outcomes:
            md = metadata("m")
            a.save_model(models[0], md)
            acked.append((md.version, fingerprint(models[0])))
        outcomes.append(real_create(key, data))
        return outcomes[-1]

    b.ledger.log.backend.create = create
    md = metadata("m")
    b.save_model(models[1], md)
    acked.append((md.version, fingerprint(models[1])))
    a.close()
    b.close()
    return acked, outcomes


def test_a_lost_race_is_refolded_and_takes_the_next_version(tmp_path):
    root = tmp_path / "cas"
    acked, outcomes = _race_two_stores(root)
    assert outcomes == [False, True]  # B lost position 1 to A, then took position 2
    assert [v for v, _ in acked] == [1, 2]
    with ModelStore(root) as store:
        for v, fp in acked:
            assert fingerprint(store.load_model("m", v)[0]) == fp
    assert check_store(root).clean


def test_without_create_only_commits_the_same_race_loses_an_acknowledged_save(tmp_path):
    """The control for the test above: with an overwriting ``create`` both saves are
    acknowledged as version 1 and A's is gone — what the checks above would catch."""
    root = tmp_path / "cas"
    acked, outcomes = _race_two_stores(root, _Overwrite)
    assert outcomes == [True] and [v for v, _ in acked] == [1, 1]  # two acks, one number
    with ModelStore(root) as store:
        assert fingerprint(store.load_model("m", 1)[0]) == acked[1][1] != acked[0][1]  # A's save is gone


def test_an_acknowledged_save_is_seen_at_once_by_every_other_process(tmp_path):
    # Mechanism: Ledger._refresh folds new commits before every load/list, and the catalog
    # feed catches the index up at the start of every session. Both stores below are warm
    # (state and index at the previous position) when the other process saves, so a cached
    # answer would be a stale one.
    root = tmp_path / "cas"
    proc = start_worker("serve", root, tmp_path / "their-index" / "catalog.duckdb")
    mine = ModelStore(root, catalog=tmp_path / "my-index" / "catalog.duckdb")
    try:
        assert proc.stdout.readline().strip() == "ready"

        def ask(line: str) -> list[str]:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            return proc.stdout.readline().split()

        for round_ in range(1, 5):
            theirs = ask(f"save m {round_} 3000")  # their save, acknowledged…
            v = 2 * round_ - 1
            assert theirs == ["ack", str(v), fingerprint(payload(round_, 3000))]
            assert view(mine, "m") == (v, theirs[2], v, v, v)  # …is what every read here says
            md = metadata("m")
            mine.save_model(payload(100 + round_, 3000), md)  # and ours is what they see
            assert ask("show m") == ["seen", str(v + 1), fingerprint(payload(100 + round_, 3000))] + [str(v + 1)] * 3
    finally:
        mine.close()
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


def _physical_copies(root) -> Counter:
    """How many packs on disk hold each entry (digest, kind): copies, not locations."""
    objects = ObjectStore(LocalBackend(root / "objects", fsync=False))
    return Counter((l.digest.hex, l.kind) for d, _ in objects.list_packs() for l in objects.pack_index(d))


def test_processes_saving_identical_bytes_get_n_versions_of_one_digest(tmp_path):
    """Racing savers may each write a pack of the same entries (no lock is held while
    packs are written); the fold names the first committed copy, and a loser, finding
    every entry present when it rebuilds its commit, references nothing of its own: its
    pack is an orphan, which gc reclaims."""
    root = tmp_path / "cas"
    ModelStore(root).close()
    procs = 5
    outs = _run_together(tmp_path, [("saver", root, "m", 1, "7=", 1 << 20) for _ in range(procs)])
    assert all(code == 0 for code, _, _ in outs), [err for _, _, err in outs]
    by_model = _versions_are_1_to_n([a for _, out, _ in outs for a in acks(out)])
    assert len(by_model["m"]) == procs
    with ModelStore(root) as store:
        history = store.history("m")
        assert len({md.digest for md in history}) == 1
    report = check_store(root, full=True)
    assert report.clean, report.problems
    copies = Counter(n for (d, kind), n in _physical_copies(root).items() if kind == CHUNK)
    assert len(copies) == 1 and 1 <= max(copies) <= procs  # every chunk has the same number of copies
    assert len(report.orphan_packs) == max(copies) - 1  # every copy but the named one is an orphan


def test_racing_savers_sharing_chunks_each_reference_one_named_copy(tmp_path):
    """Different models sharing a large array: each saver's pack holds its own bytes and,
    if it looked before another committed, a copy of the shared chunks. Every version
    loads through the one location the fold names; the other copies are dead weight."""
    root = tmp_path / "cas"
    ModelStore(root).close()
    procs, shared = 4, 2 << 20
    outs = _run_together(tmp_path, [("shared-saver", root, f"m{w}", w + 1, shared, 20_000) for w in range(procs)])
    assert all(code == 0 for code, _, _ in outs), [err for _, _, err in outs]
    report = check_store(root, full=True)
    assert report.clean, report.problems
    objects = ObjectStore(LocalBackend(root / "objects", fsync=False))
    st, _ = fold_from_scratch(objects)
    chunk_sets = [{c.digest.hex for c in Manifest.from_bytes(objects.read(st.entries[e.versions[0].manifest])).chunks()}
                  for e in st.models.values()]
    shared_chunks = set.intersection(*chunk_sets)
    copies = {d: n for (d, kind), n in _physical_copies(root).items()}
    assert shared_chunks and all(1 <= copies[d] <= procs for d in shared_chunks)
    assert all(n == 1 for d, n in copies.items() if d not in shared_chunks)  # only shared chunks are copied
    assert all(d in copies for d in st.entries)  # the copy the fold names is on disk (one location each)
    with ModelStore(root) as store:
        assert sorted(md.model_id for md in store.list_models()) == [f"m{w}" for w in range(procs)]
        for w in range(procs):
            assert store.load_model(f"m{w}")[0]["shared"].nbytes == shared


def test_a_lost_race_of_identical_bytes_leaves_an_orphan_pack_that_gc_deletes(tmp_path):
    """Deterministic: B wrote its pack (the same entries, another name: every pack has a
    nonce) before A committed; B's rebuilt commit finds every entry present and references
    none of its own, so the fold names A's copies and B's pack is an orphan."""
    from cas_repo.maintenance.collect import run_gc

    root = tmp_path / "cas"
    same = payload(7, 1 << 20)
    acked, outcomes = _race_two_stores(root, models=(same, same))
    assert outcomes == [False, True] and [v for v, _ in acked] == [1, 2]
    report = check_store(root, full=True)
    assert report.clean and len(report.orphan_packs) == 1
    assert set(_physical_copies(root).values()) == {2}
    with ModelStore(root) as store:
        gc = run_gc(store, grace=timedelta(0))
        assert [p.pack for p in gc.deleted] == list(report.orphan_packs)
    assert set(_physical_copies(root).values()) == {1}
    after = check_store(root, full=True)
    assert after.clean and after.orphan_packs == ()
    with ModelStore(root) as store:
        assert len({md.digest for md in store.history("m")}) == 1
        assert fingerprint(store.load_model("m", 2)[0]) == fingerprint(same)


def test_gc_reclaims_the_copies_racing_savers_left(tmp_path):
    """Identical saves: the losers' packs are orphans, deleted. Shared chunks: the losers'
    packs keep their own live entries, and a repack drops their dead copies."""
    from cas_repo.maintenance.collect import run_gc

    root = tmp_path / "cas"
    ModelStore(root).close()
    outs = _run_together(tmp_path, [("saver", root, "m", 1, "7=", 1 << 20) for _ in range(3)]
                         + [("shared-saver", root, f"s{w}", w + 1, 1 << 20, 20_000) for w in range(3)])
    assert all(code == 0 for code, _, _ in outs), [err for _, _, err in outs]
    with ModelStore(root) as store:
        run_gc(store, grace=timedelta(0), repack_below=0.9)
    assert set(_physical_copies(root).values()) == {1}
    report = check_store(root, full=True)
    assert report.clean and report.orphan_packs == () and report.temp_files == ()
    with ModelStore(root) as store:
        assert len(store.history("m")) == 3
        for w in range(3):
            assert store.load_model(f"s{w}")[0]["shared"].nbytes == 1 << 20


def test_readers_during_writers_never_see_garbage(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 20_000), metadata("m"))
    stop = tmp_path / "stop"
    readers = [start_worker("reader", root, "m", stop) for _ in range(2)]
    for r in readers:
        assert r.stdout.readline().strip() == "ready"
    outs = _run_together(tmp_path, [("saver", root, "m", 8, 10_000 * w, 20_000 + 5_000 * w) for w in range(3)])
    stop.touch()
    assert all(code == 0 for code, _, _ in outs), [err for _, _, err in outs]
    for r in readers:
        out, err = r.communicate(timeout=120)
        assert r.returncode == 0, err
        assert out.split()[-3:] == ["reads", out.split()[-2], "25"]  # its last read saw every save
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == list(range(1, 26))
    assert check_store(root).clean


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


def test_a_held_index_session_blocks_no_save_load_or_list(tmp_path):
    """Another process sits inside a catalog-index session (holding its lock) for as long as
    it likes; saves, loads and lists here never wait for it."""
    # Mechanism: the save and load paths fold the log and never open the catalog. With a
    # catalog lock on the save path, the save below would raise CatalogLockedError after
    # its 0.2 s lock_timeout.
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 3000), metadata("m"))
    stop = tmp_path / "stop"
    holder = start_worker("hold-index", root, stop)
    try:
        assert holder.stdout.readline().split() == ["holding", str(holder.pid)]
        with ModelStore(root, lock_timeout=0.2) as store:
            for seed in (2, 3):
                store.save_model(payload(seed, 3000), metadata("m"))
            assert store.load_model("m")[1].version == 3
            assert [md.version for md in store.list_models()] == [3]
            store.delete_model("m")
            store.undelete_model("m")
        assert holder.poll() is None  # still inside its session
    finally:
        stop.touch()
    out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0 and "released" in out, err


def test_index_session_killed_with_sigkill_releases_the_lock(tmp_path):
    """The kernel drops a flock when its holder dies, however it dies: no stale lock."""
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 3000), metadata("m"))
    holder = start_worker("hold-index", root, tmp_path / "never")
    assert holder.stdout.readline().split() == ["holding", str(holder.pid)]
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with ModelStore(root, lock_timeout=30) as store:  # a stale lock would time out here
        assert [md.version for md in store.history("m")] == [1]
    assert check_store(root).clean
