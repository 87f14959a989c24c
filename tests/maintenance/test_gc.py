"""gc: plan = execution, grace for orphans, tombstones kept until purged, repack, and races with writers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cas_repo import ModelDeletedError, ModelStore
from cas_repo.content import to_content
from cas_repo.digest import hash_bytes
from cas_repo.errors import GcRefusedError, ModelPurgedError
from cas_repo.location import CHUNK, RECORD
from cas_repo.log.legacy import EventRecord
from cas_repo.maintenance import collect_garbage, fsck, plan_gc, run_gc
from cas_repo.maintenance.collect import STALE, UNSAFE
from cas_repo.objects.local import TEMP_PREFIX
from cas_repo.objects.store import NewEntry

from .conftest import NO_GRACE, age, age_store, locations, pack_path


def files(store_dir):
    return {p for p in (store_dir / "objects" / "packs").rglob("*") if p.is_file()}


def orphan(store, data: bytes):
    """A pack no commit mentions, as a save that crashed before its commit leaves."""
    [loc] = store.objects.write([NewEntry(hash_bytes(data), CHUNK, data)])
    return loc.pack


def codes(report):
    return sorted(f.code for f in report.findings if not f.repaired)


@pytest.fixture
def garbage_store(store, store_dir, make_md, rng):
    """Live models, a tombstoned one, an orphan pack and an old temp file, all aged."""
    shared = rng.standard_normal(40_000)
    for i in range(3):
        store.save_model({"w": shared, "i": i, "own": rng.standard_normal(5_000)}, make_md("a", IC=0.01 * i))
    store.save_model({"w": shared}, make_md("b"))
    store.save_model({"w": rng.standard_normal(20_000)}, make_md("c"))
    store.delete_model("c")
    orphan(store, b"an interrupted save" * 500)
    (pack_path(store_dir, locations(store, "b")[0].pack).parent / f"{TEMP_PREFIX}9-dead").write_bytes(b"t")
    age_store(store_dir, 3)
    return store


def test_dry_run_changes_nothing_and_the_real_run_does_exactly_the_plan(garbage_store, store_dir):
    before = files(store_dir)
    position = garbage_store.ledger.refresh()
    dry = run_gc(garbage_store, dry_run=True, grace=timedelta(hours=1), purge_older_than=NO_GRACE)
    assert files(store_dir) == before and garbage_store.ledger.refresh() == position  # no commit either
    assert dry.dry_run and dry.deleted == () and dry.purged == () and dry.position is None
    plan = dry.plan
    assert plan.position == position
    assert [(c.model_id, c.version) for c in plan.purge] == [("c", 1)]
    # c's pack (nothing else uses it) and the orphan; no pack mixes live and dead entries.
    assert len(plan.delete) == 2 and [p.orphan for p in plan.delete].count(True) == 1
    assert len(plan.temp_files) == 1 and plan.repack == ()
    real = run_gc(garbage_store, grace=timedelta(hours=1), purge_older_than=NO_GRACE)
    assert real.position == position + 1  # everything in one log commit
    assert real.purged == tuple((c.model_id, c.version) for c in plan.purge)
    assert {p.pack for p in real.deleted} == {p.pack for p in plan.delete}
    assert {t.key for t in real.temp_removed} == {t.key for t in plan.temp_files}
    assert real.skipped == () and real.freed_bytes == plan.delete_bytes > 0
    gone = ({pack_path(store_dir, p.pack) for p in plan.delete}
            | {store_dir / "objects" / t.key for t in plan.temp_files})
    assert files(store_dir) == before - gone
    assert fsck(garbage_store, full=True).findings == ()


def test_a_shared_object_survives_tombstoning_one_of_its_two_users(store, store_dir, make_md, rng):
    shared = rng.standard_normal(30_000)
    store.save_model({"w": shared, "own": rng.standard_normal(60_000)}, make_md("a"))
    store.save_model({"w": shared, "own": rng.standard_normal(60_000)}, make_md("b"))  # dedups onto a's pack
    store.delete_model("a")
    old = locations(store, "a", 1)[0].pack
    # Tombstoned models are retained until purged: without the flag gc frees nothing.
    kept = run_gc(store, grace=NO_GRACE)
    assert kept.deleted == () and kept.repacked == () and kept.purged == () and kept.position is None
    store.load_model("a", 1)
    first = run_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
    # a's pack held b's shared chunk: the chunk moved to a new pack, a's pack went in the same run.
    assert first.purged == (("a", 1),) and [p.pack for p in first.repacked] == [old.hex] and first.deleted == ()
    assert not pack_path(store_dir, old).exists() and len(first.new_packs) == 1
    assert first.freed_bytes >= first.plan.repack_bytes > 400_000
    assert run_gc(store, grace=NO_GRACE).position is None  # nothing left to do
    model, _ = store.load_model("b")
    assert np.array_equal(model["w"], shared)
    with pytest.raises(ModelDeletedError):
        store.load_model("a")
    with pytest.raises(ModelPurgedError, match="purged by gc"):
        store.load_model("a", 1)
    assert [v.version for v in store.history("a")] == [1]  # history is kept, content is not
    assert fsck(store, full=True).findings == ()


def test_grace_applies_to_packs_no_commit_mentions(store, store_dir, make_md):
    store.save_model({"w": np.arange(1000)}, make_md())
    pack = orphan(store, b"x" * 5000)
    plan = plan_gc(store)  # default grace: 24h
    assert [p.pack for p in plan.fresh] == [pack.hex] and plan.delete == ()
    age(pack_path(store_dir, pack), 2)
    assert [p.pack for p in run_gc(store).deleted] == [pack.hex]
    assert not pack_path(store_dir, pack).exists()
    assert pack.hex in store.ledger.log.read(store.ledger.refresh()).ops[0].packs  # forgotten by a commit


def test_a_purged_versions_pack_goes_in_the_same_run_without_waiting_for_grace(store, store_dir, make_md, rng):
    store.save_model({"w": rng.standard_normal(50_000), "i": 1}, make_md("m"))
    store.save_model({"w": rng.standard_normal(50_000), "i": 2}, make_md("m"))  # nothing shared with m@1
    old = locations(store, "m", 1)[0].pack
    from cas_repo.maintenance import RetentionPolicy, apply_retention

    apply_retention(store, RetentionPolicy(keep_last=1))
    report = run_gc(store, grace=timedelta(days=7), purge_older_than=NO_GRACE)
    # A committed pack's safety comes from the log, not its age: only orphans wait.
    assert report.purged == (("m", 1),) and [p.pack for p in report.deleted] == [old.hex]
    assert not pack_path(store_dir, old).exists()
    store.load_model("m", 2)
    assert [v.version for v in store.history("m")] == [1, 2]
    assert fsck(store, full=True).findings == ()


def test_gc_refuses_when_a_pack_live_versions_need_is_missing(store, store_dir, make_md):
    store.save_model({"w": np.arange(1000)}, make_md("a"))
    pack = orphan(store, b"y" * 5000)
    position = store.ledger.refresh()
    (pack_path(store_dir, locations(store, "a")[0].pack)).unlink()
    plan = plan_gc(store, grace=NO_GRACE)
    assert plan.refused and len(plan.missing) == 1
    with pytest.raises(GcRefusedError, match="fsck"):
        collect_garbage(store, plan)
    assert pack_path(store_dir, pack).exists() and store.ledger.refresh() == position


def test_gc_killed_midway_is_simply_run_again(garbage_store, store_dir, monkeypatch):
    real_delete = garbage_store.objects.delete_pack
    calls = []

    def dies_on_second(pack):
        calls.append(pack)
        if len(calls) == 1:
            real_delete(pack)
            return
        raise KeyboardInterrupt("killed")

    for name in ("d1", "d2", "d3"):
        age(pack_path(store_dir, orphan(garbage_store, name.encode() * 3000)), 3)
    monkeypatch.setattr(garbage_store.objects, "delete_pack", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_gc(garbage_store, grace=NO_GRACE, purge_older_than=NO_GRACE)
    monkeypatch.undo()
    # The commit went before the files: what is left is forgotten packs, harmless.
    report = fsck(garbage_store, full=True)
    assert report.clean and set(codes(report)) == {"forgotten-pack"} and len(report.findings) == 4
    again = run_gc(garbage_store, grace=NO_GRACE)
    assert len(again.deleted) == 4 and again.skipped == () and again.position is None  # no commit needed
    assert run_gc(garbage_store, grace=NO_GRACE).deleted == ()
    assert fsck(garbage_store, full=True).findings == ()
    garbage_store.load_model("b")
    for v in (1, 2, 3):
        garbage_store.load_model("a", v)


def test_a_save_that_dedups_onto_planned_garbage_keeps_it(store, store_dir, make_md, rng):
    """The plan is stale by the time it commits: the writer's dedup hit must win."""
    model = {"w": rng.standard_normal(50_000)}
    store.save_model(model, make_md("a"))
    store.delete_model("a")
    plan = plan_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
    content_pack = locations(store, "a", 1)[0].pack
    assert content_pack.hex in {p.pack for p in plan.delete}
    store.save_model(model, make_md("b"))  # dedups onto a's chunks and manifest: no new pack
    report = collect_garbage(store, plan)
    assert report.purged == (("a", 1),) and report.deleted == ()
    assert report.skipped == ((content_pack.hex, UNSAFE),)
    assert np.array_equal(store.load_model("b")[0]["w"], model["w"])
    assert fsck(store, full=True).findings == ()
    assert run_gc(store, grace=NO_GRACE).deleted == ()  # b's version keeps it live from now on


def test_a_rollback_onto_content_gc_planned_to_purge_keeps_it(store, make_md, rng):
    store.save_model({"w": rng.standard_normal(30_000), "i": 1}, make_md("m"))
    store.save_model({"w": rng.standard_normal(30_000), "i": 2}, make_md("m"))
    from cas_repo.maintenance import RetentionPolicy, apply_retention

    apply_retention(store, RetentionPolicy(keep_last=1))
    plan = plan_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
    assert [(c.model_id, c.version) for c in plan.purge] == [("m", 1)] and len(plan.delete) == 1
    assert store.rollback("m", 1) == 3  # reuses version 1's manifest: a save with no chunk list
    report = collect_garbage(store, plan)
    assert report.purged == (("m", 1),) and report.deleted == () and len(report.skipped) == 1
    store.load_model("m", 3)
    assert fsck(store, full=True).findings == ()


def test_an_undelete_between_plan_and_commit_cancels_the_purge_and_keeps_the_content(store, make_md, rng):
    store.save_model({"w": rng.standard_normal(30_000)}, make_md("m"))
    store.delete_model("m")
    plan = plan_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
    assert [(c.model_id, c.version) for c in plan.purge] == [("m", 1)] and len(plan.delete) == 1
    store.undelete_model("m")
    report = collect_garbage(store, plan)
    assert report.purged == () and report.deleted == () and len(report.skipped) == 1
    store.load_model("m")
    assert fsck(store, full=True).findings == ()


def test_two_machines_a_save_between_plan_and_commit_loses_nothing(store_dir, tmp_path, make_md, rng):
    """Two processes on one store, each with its own index (as two machines): gc plans on one,
    the other commits a save deduplicated onto a pack the plan drops, then gc commits and
    deletes files."""
    model = {"w": rng.standard_normal(50_000)}
    opts = {"fsync": False}
    with ModelStore(store_dir, catalog=tmp_path / "gc.duckdb", backend_options=opts) as gc_side, \
            ModelStore(store_dir, catalog=tmp_path / "writer.duckdb", backend_options=opts) as writer:
        gc_side.save_model(model, make_md("a"))
        gc_side.delete_model("a")
        dead = locations(gc_side, "a", 1)[0].pack
        plan = plan_gc(gc_side, grace=NO_GRACE, purge_older_than=NO_GRACE)
        assert dead.hex in {p.pack for p in plan.delete}
        writer.save_model(model, make_md("b"))  # its own ledger: it has seen no gc commit
        report = collect_garbage(gc_side, plan)
        assert report.purged == (("a", 1),) and (dead.hex, UNSAFE) in report.skipped
        assert pack_path(store_dir, dead).exists()
        assert np.array_equal(writer.load_model("b")[0]["w"], model["w"])
        assert np.array_equal(gc_side.load_model("b")[0]["w"], model["w"])
        assert fsck(gc_side, full=True).findings == () and fsck(writer, full=True).findings == ()


def test_two_machines_a_save_after_the_commit_stores_its_content_again(store_dir, tmp_path, make_md, rng):
    """The writer looked before gc committed and commits after: its build sees the forget."""
    model = {"w": rng.standard_normal(50_000)}
    opts = {"fsync": False}
    with ModelStore(store_dir, catalog=tmp_path / "gc.duckdb", backend_options=opts) as gc_side, \
            ModelStore(store_dir, catalog=tmp_path / "writer.duckdb", backend_options=opts) as writer:
        gc_side.save_model(model, make_md("a"))
        gc_side.delete_model("a")
        writer.ledger.refresh()  # the writer's state holds a's content as stored
        dead = locations(gc_side, "a", 1)[0].pack
        report = run_gc(gc_side, grace=NO_GRACE, purge_older_than=NO_GRACE)
        assert [p.pack for p in report.deleted] == [dead.hex] and not pack_path(store_dir, dead).exists()
        writer.save_model(model, make_md("b"))
        assert np.array_equal(writer.load_model("b")[0]["w"], model["w"])
        assert fsck(writer, full=True).findings == ()


def test_gc_between_a_writers_presence_check_and_its_commit_loses_nothing(store, store_dir, make_md, rng,
                                                                           monkeypatch):
    """A save that saw its chunks present, then a whole gc removes them, then the save commits."""
    model = {"w": rng.standard_normal(50_000)}
    store.save_model(model, make_md("a"))
    store.delete_model("a")
    real_write = store.objects.write
    ran = []

    def write_then_gc(entries, **kw):
        locs = real_write(entries, **kw)
        if not ran:  # the writer's first write: presence checked, commit still to come
            ran.append(None)
            ran[0] = run_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
        return locs

    monkeypatch.setattr(store.objects, "write", write_then_gc)
    store.save_model(model, make_md("b"))
    monkeypatch.undo()
    [gc] = ran
    assert gc.purged == (("a", 1),) and gc.deleted  # the gc really removed what the writer had seen
    assert np.array_equal(store.load_model("b")[0]["w"], model["w"])
    run_gc(store, grace=NO_GRACE)
    store.load_model("b")
    assert fsck(store, full=True).findings == ()


def test_a_save_that_would_rewrite_a_forgotten_pack_gets_a_new_one(store_dir, tmp_path, make_md, rng,
                                                                    monkeypatch):
    """A crashed save left pack X; gc forgets X while the retry of that save runs. The retry
    writes the same entries in the same order; were its pack X's bytes, a put would find X
    still there (gc deletes after its commit) and only refresh it, and gc's deletion would
    then lose the version. The pack's nonce gives the retry's pack a name of its own."""
    model = {"w": rng.standard_normal(50_000)}
    content = to_content(model)
    opts = {"fsync": False}
    with ModelStore(store_dir, catalog=tmp_path / "gc.duckdb", backend_options=opts) as gc_side, \
            ModelStore(store_dir, catalog=tmp_path / "writer.duckdb", backend_options=opts) as writer:
        gc_side.save_model({"w": 0}, make_md("other"))
        leftover = gc_side.objects.write([*content.entries.values(), content.manifest_entry])
        [pack] = {l.pack for l in leftover}
        age(pack_path(store_dir, pack), 3)
        plan = plan_gc(gc_side, grace=timedelta(hours=1))
        assert [p.pack for p in plan.delete] == [pack.hex]
        deferred, real_write = [], writer.objects.write
        monkeypatch.setattr(gc_side.objects, "delete_pack", deferred.append)  # gc is slow to delete

        def retry_meets_gc(entries, **kw):
            locs = real_write(entries, **kw)
            if not deferred:
                assert {l.pack for l in locs} != {pack}  # same entries, another pack
                collect_garbage(gc_side, plan)  # gc commits its forget of X now
            return locs

        monkeypatch.setattr(writer.objects, "write", retry_meets_gc)
        writer.save_model(model, make_md("b"))
        monkeypatch.undo()
        assert deferred == [pack]
        assert locations(writer, "b")[0].pack != pack
        for p in deferred:  # gc's deletion lands after the writer's commit
            gc_side.objects.delete_pack(p)
        assert np.array_equal(writer.load_model("b")[0]["w"], model["w"])
        run_gc(gc_side, grace=NO_GRACE)
        assert np.array_equal(gc_side.load_model("b")[0]["w"], model["w"])
        assert fsck(gc_side, full=True).findings == ()


def test_two_gcs_at_once_the_second_drops_nothing(store_dir, tmp_path, make_md, rng):
    opts = {"fsync": False}
    with ModelStore(store_dir, catalog=tmp_path / "one.duckdb", backend_options=opts) as one, \
            ModelStore(store_dir, catalog=tmp_path / "two.duckdb", backend_options=opts) as two:
        one.save_model({"w": rng.standard_normal(10_000)}, make_md("a"))
        one.delete_model("a")
        first = plan_gc(one, grace=NO_GRACE, purge_older_than=NO_GRACE)
        second = plan_gc(two, grace=NO_GRACE, purge_older_than=NO_GRACE)
        assert len(collect_garbage(one, first).deleted) == 1
        late = collect_garbage(two, second)
        assert late.purged == () and late.deleted == () and late.skipped == ((first.delete[0].pack, STALE),)
        assert fsck(two, full=True).findings == ()


def test_two_gcs_on_different_packs_both_drop_theirs(store_dir, tmp_path, make_md, rng):
    opts = {"fsync": False}
    with ModelStore(store_dir, catalog=tmp_path / "one.duckdb", backend_options=opts) as one, \
            ModelStore(store_dir, catalog=tmp_path / "two.duckdb", backend_options=opts) as two:
        one.save_model({"w": rng.standard_normal(10_000)}, make_md("a"))
        one.delete_model("a")
        late = plan_gc(two, grace=timedelta(hours=1), purge_older_than=NO_GRACE)  # a's pack
        stray = orphan(one, b"a crashed save" * 100)
        age(pack_path(store_dir, stray), 3)
        early = plan_gc(one, grace=timedelta(hours=1))  # the stray pack only: a is not purged without the flag
        assert [p.pack for p in early.delete] == [stray.hex] and stray.hex not in {p.pack for p in late.delete}
        assert len(collect_garbage(one, early).deleted) == 1
        report = collect_garbage(two, late)  # a commit on another pack since its plan does not stop it
        assert report.purged == (("a", 1),) and len(report.deleted) == 1 and report.skipped == ()
        assert fsck(one, full=True).findings == ()


def test_legacy_event_records_in_an_orphan_pack_are_dropped_like_any_orphan(store, store_dir, make_md):
    """Format 1 kept an event record per event in packs; the log holds history now."""
    store.save_model({"w": np.arange(1000)}, make_md("m"))
    unseen = EventRecord("delete", "m", 2, 1, datetime.now(UTC)).to_bytes()
    [loc] = store.objects.write([NewEntry(hash_bytes(unseen), RECORD, unseen, compress=False)])
    age(pack_path(store_dir, loc.pack), 3)
    plan = plan_gc(store, grace=timedelta(hours=1))
    assert not plan.refused
    assert [p.pack for p in collect_garbage(store, plan).deleted] == [loc.pack.hex]
    assert [m.deleted for m in store.list_models(include_deleted=True)] == [False]


def test_a_keyed_store_seals_every_commit_and_gc_keeps_working(store_dir, make_md, rng):
    from cas_repo.maintenance import RetentionPolicy, apply_retention

    secret = "k" * 32
    with ModelStore(store_dir, key=secret, backend_options={"fsync": False}) as keyed:
        for i in range(3):
            keyed.save_model({"w": rng.standard_normal(5_000), "i": i}, make_md("m"))
        apply_retention(keyed, RetentionPolicy(keep_last=1))  # one commit of two marks
        assert run_gc(keyed, grace=NO_GRACE, purge_older_than=NO_GRACE).purged == (("m", 1), ("m", 2))
        assert fsck(keyed, full=True).findings == ()
        keyed.load_model("m")
        commits = keyed.ledger.refresh()
    assert commits == 5
    with ModelStore(store_dir, key="another key of 32 bytes........", backend_options={"fsync": False}) as wrong:
        report = fsck(wrong)
        assert {f.code for f in report.findings} == {"log-unreadable"} and len(report.findings) == commits


def test_a_load_holding_old_locations_survives_a_repack_of_its_pack(store, store_dir, make_md, rng, monkeypatch):
    """A reader takes its locations from its state and reads later; a repack in between moves
    the entries and deletes the old pack, so the read fails, the reader folds gc's commit in
    and reads the new locations."""
    shared = rng.standard_normal(20_000)
    store.save_model({"s": shared, "own": rng.standard_normal(80_000)}, make_md("a"))
    store.save_model({"s": shared, "own": rng.standard_normal(1_000)}, make_md("b"))  # dedups onto a's pack
    store.delete_model("a")
    old = locations(store, "a", 1)[0].pack
    real_locate, ran = store.reader.locate, []

    def gc_after_locating(digests, row):
        locs = real_locate(digests, row)
        if not ran and any(l.pack == old for l in locs):
            ran.append(run_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE))
        return locs

    monkeypatch.setattr(store.reader, "locate", gc_after_locating)
    model, _ = store.load_model("b")
    monkeypatch.undo()
    [gc] = ran
    assert [p.pack for p in gc.repacked] == [old.hex] and not pack_path(store_dir, old).exists()
    assert np.array_equal(model["s"], shared)
    store.load_model("b")
