"""gc: plan = execution, grace by mtime, tombstones kept until purged, repack, and races with writers."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest

from cas_repo import ModelDeletedError, ModelStore
from cas_repo.content import to_content
from cas_repo.digest import hash_bytes
from cas_repo.errors import GcRefusedError, ModelPurgedError
from cas_repo.location import CHUNK
from cas_repo.maintenance import collect_garbage, fsck, plan_gc, run_gc
from cas_repo.objects.local import TEMP_PREFIX
from cas_repo.objects.store import NewEntry

from .conftest import NO_GRACE, age, age_store, locations, pack_path



def files(store_dir):
    return {p for p in (store_dir / "objects").rglob("*") if p.is_file()}


def orphan(store, data: bytes):
    """A pack no catalog row refers to, as an interrupted save leaves."""
    [loc] = store.objects.write([NewEntry(hash_bytes(data), CHUNK, data)])
    return loc.pack


@pytest.fixture
def garbage_store(store, store_dir, make_md, rng):
    """Live models, a tombstoned one, retired history, an orphan pack and an old temp file, all aged."""
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
    dry = run_gc(garbage_store, dry_run=True, grace=timedelta(hours=1), purge_older_than=NO_GRACE)
    assert files(store_dir) == before
    assert dry.dry_run and dry.deleted == () and dry.purged == ()
    plan = dry.plan
    assert [(c.model_id, c.version) for c in plan.purge] == [("c", 1)]
    assert len(plan.delete) == 1 and len(plan.temp_files) == 1 and len(plan.repack) == 1
    real = run_gc(garbage_store, grace=timedelta(hours=1), purge_older_than=NO_GRACE)
    assert {c.model_id for c in real.plan.purge} == {c.model_id for c in plan.purge}
    assert real.purged == tuple((c.model_id, c.version) for c in plan.purge)
    assert {p.pack for p in real.deleted} == {p.pack for p in plan.delete}
    assert {p.pack for p in real.repacked} == {p.pack for p in plan.repack}
    assert {t.key for t in real.temp_removed} == {t.key for t in plan.temp_files}
    assert real.skipped == ()
    assert real.freed_bytes == plan.delete_bytes > 0
    assert fsck(garbage_store, full=True).clean


def test_a_shared_object_survives_tombstoning_one_of_its_two_users(store, store_dir, make_md, rng):
    shared = rng.standard_normal(30_000)
    store.save_model({"w": shared, "own": rng.standard_normal(60_000)}, make_md("a"))
    store.save_model({"w": shared, "own": rng.standard_normal(60_000)}, make_md("b"))
    store.delete_model("a")
    # Tombstoned models are retained until purged: without the flag gc frees nothing.
    kept = run_gc(store, grace=NO_GRACE)
    assert kept.deleted == () and kept.repacked == () and kept.purged == ()
    store.load_model("a", 1)
    first = run_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
    assert first.purged == (("a", 1),) and len(first.repacked) == 1
    second = run_gc(store, grace=NO_GRACE)  # the repacked pack goes once its grace is over
    assert [p.pack for p in second.deleted] == [p.pack for p in first.repacked]
    model, _ = store.load_model("b")
    assert np.array_equal(model["w"], shared)
    with pytest.raises(ModelDeletedError):
        store.load_model("a")
    with pytest.raises(ModelPurgedError, match="purged by gc"):
        store.load_model("a", 1)
    assert fsck(store, full=True).findings == ()


def test_grace_is_measured_from_pack_mtime(store, store_dir, make_md):
    store.save_model({"w": np.arange(1000)}, make_md())
    pack = orphan(store, b"x" * 5000)
    plan = plan_gc(store)  # default grace: 24h
    assert [p.pack for p in plan.fresh] == [pack.hex] and plan.delete == ()
    age(pack_path(store_dir, pack), 2)
    assert [p.pack for p in run_gc(store).deleted] == [pack.hex]
    assert not pack_path(store_dir, pack).exists()


def test_repack_rewrites_a_mostly_dead_pack_and_deletes_the_old_one_only_after_grace(store, store_dir, make_md, rng):
    store.save_model({"w": rng.standard_normal(50_000)}, make_md("m"))
    store.save_model({"w": rng.standard_normal(50_000)}, make_md("m"))
    old = locations(store, "m", 1)[0].pack
    from cas_repo.maintenance import RetentionPolicy, apply_retention

    apply_retention(store, RetentionPolicy(keep_last=1))
    age_store(store_dir, 3)
    report = run_gc(store, grace=timedelta(hours=1), purge_older_than=NO_GRACE)
    assert [p.pack for p in report.repacked] == [old.hex] and report.deleted == ()
    assert pack_path(store_dir, old).exists()  # readers may still hold its old locations
    assert report.pending_bytes > 390_000
    assert run_gc(store, grace=timedelta(hours=1)).deleted == ()  # touched at repack: inside grace again
    age(pack_path(store_dir, old), 2)
    later = run_gc(store, grace=timedelta(hours=1))
    assert [p.pack for p in later.deleted] == [old.hex]
    store.load_model("m", 2)
    assert [v.version for v in store.history("m")] == [1, 2]  # history is kept, content is not
    assert fsck(store, full=True).findings == ()


def test_gc_refuses_when_a_pack_live_versions_need_is_missing(store, store_dir, make_md):
    store.save_model({"w": np.arange(1000)}, make_md("a"))
    pack = orphan(store, b"y" * 5000)
    (pack_path(store_dir, locations(store, "a")[0].pack)).unlink()
    plan = plan_gc(store, grace=NO_GRACE)
    assert plan.refused and len(plan.missing) == 1
    with pytest.raises(GcRefusedError, match="fsck"):
        collect_garbage(store, plan)
    assert pack_path(store_dir, pack).exists()


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
    assert fsck(garbage_store, full=True).clean  # rows went before files: nothing dangles
    again = run_gc(garbage_store, grace=NO_GRACE)
    assert len(again.deleted) >= 3 and again.skipped == ()
    assert run_gc(garbage_store, grace=NO_GRACE).deleted == ()
    assert fsck(garbage_store, full=True).findings == ()
    garbage_store.load_model("b")
    for v in (1, 2, 3):
        garbage_store.load_model("a", v)


def test_a_save_that_dedups_onto_planned_garbage_keeps_it(store, store_dir, make_md, rng, monkeypatch):
    """The plan is stale by the time it runs: the writer's dedup hit must win."""
    monkeypatch.setattr("cas_repo.repository.PREWRITE_BYTES", 0)  # chunks in their own pack, no record
    model = {"w": rng.standard_normal(50_000)}
    store.save_model(model, make_md("a"))
    store.delete_model("a")
    age_store(store_dir, 3)
    plan = plan_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
    content_pack = locations(store, "a", 1)[0].pack
    assert content_pack.hex in {p.pack for p in plan.delete}
    store.save_model(model, make_md("b"))  # dedups onto a's chunks and manifest
    report = collect_garbage(store, plan)
    assert (content_pack.hex, "a version needs it again") in report.skipped
    assert np.array_equal(store.load_model("b")[0]["w"], model["w"])
    assert fsck(store, full=True).findings == ()


def test_gc_between_a_writers_presence_check_and_its_commit_loses_nothing(store, store_dir, make_md, rng,
                                                                           monkeypatch):
    """A save that saw its chunks present, then a whole gc removes them, then the save commits."""
    monkeypatch.setattr("cas_repo.repository.PREWRITE_BYTES", 0)
    model = {"w": rng.standard_normal(50_000)}
    store.save_model(model, make_md("a"))
    store.delete_model("a")
    age_store(store_dir, 3)
    real_write = store.objects.write
    ran = []

    def write_then_gc(entries):
        locs = real_write(entries)
        if not ran:  # the writer's prewrite: presence checked, lock released, commit still to come
            ran.append(None)  # gc writes too: run it once
            ran[0] = run_gc(store, grace=NO_GRACE, purge_older_than=NO_GRACE)
        return locs

    monkeypatch.setattr(store.objects, "write", write_then_gc)
    store.save_model(model, make_md("b"))
    monkeypatch.undo()
    [gc] = ran
    assert gc.purged == (("a", 1),) and gc.deleted  # the gc really removed what the writer had seen
    assert np.array_equal(store.load_model("b")[0]["w"], model["w"])
    assert fsck(store, full=True).findings == ()
    run_gc(store, grace=NO_GRACE)
    store.load_model("b")
    assert fsck(store, full=True).findings == ()


def test_a_prewrite_that_refreshes_a_pack_gc_is_deleting_loses_nothing(store_dir, make_md, rng, monkeypatch):
    """The writer's put finds its pack already there (an interrupted save of the same content
    left it) and refreshes it just after gc read its old mtime; gc deletes it anyway. The
    writer must notice under the catalog lock and store the content again."""
    monkeypatch.setattr("cas_repo.repository.PREWRITE_BYTES", 0)
    model = {"w": rng.standard_normal(50_000)}
    content = to_content(model)
    with ModelStore(store_dir) as gc_store, ModelStore(store_dir) as writer:
        leftover = gc_store.objects.write(list(content.entries.values()) + [content.manifest_entry])
        [pack] = {l.pack for l in leftover}
        age(pack_path(store_dir, pack), 3)
        plan = plan_gc(gc_store, grace=NO_GRACE)
        assert [p.pack for p in plan.delete] == [pack.hex]
        checked, gc_read_mtime, refreshed = threading.Event(), threading.Event(), threading.Event()
        errors, writes = [], []
        real_write, real_delete = writer.objects.write, gc_store.objects.delete_pack

        def prewrite_in_the_gap(entries):
            writes.append(1)
            if len(writes) == 1:  # the prewrite: presence checked, catalog lock released
                checked.set()
                assert gc_read_mtime.wait(30)
                locs = real_write(entries)  # finds the leftover pack: only refreshes its mtime
                assert {l.pack for l in locs} == {pack}
                refreshed.set()
                return locs
            return real_write(entries)

        def delete_after_the_refresh(p):
            gc_read_mtime.set()
            assert refreshed.wait(30)
            real_delete(p)

        def save():
            try:
                writer.save_model(model, make_md("b"))
            except Exception as exc:  # asserted below
                errors.append(exc)

        monkeypatch.setattr(writer.objects, "write", prewrite_in_the_gap)
        monkeypatch.setattr(gc_store.objects, "delete_pack", delete_after_the_refresh)
        thread = threading.Thread(target=save)
        thread.start()
        assert checked.wait(30)
        report = collect_garbage(gc_store, plan)
        thread.join(60)
        assert errors == [] and [p.pack for p in report.deleted] == [pack.hex]
        assert not pack_path(store_dir, pack).exists()
        assert np.array_equal(writer.load_model("b")[0]["w"], model["w"])
        assert fsck(gc_store, full=True).findings == ()


def test_gc_refuses_while_garbage_holds_events_the_catalog_never_recorded(store, store_dir, make_md):
    """Another catalog's saves, lost rows, or an interrupted save: history gc must not delete."""
    from datetime import datetime, timezone

    from cas_repo.location import RECORD
    from cas_repo.manifest import EventRecord

    store.save_model({"w": np.arange(1000)}, make_md("m"))
    unseen = EventRecord("delete", "m", 2, 1, datetime.now(timezone.utc)).to_bytes()
    [loc] = store.objects.write([NewEntry(hash_bytes(unseen), RECORD, unseen, compress=False)])
    age(pack_path(store_dir, loc.pack), 3)
    plan = plan_gc(store, grace=NO_GRACE)
    assert plan.refused and plan.unknown_events == ("m#2",)
    with pytest.raises(GcRefusedError, match="never recorded"):
        collect_garbage(store, plan)
    store.delete_model("m")  # the model's next event takes seq 2: the leftover is superseded
    assert [p.pack for p in run_gc(store, grace=NO_GRACE).deleted] == [loc.pack.hex]


def test_a_keyed_store_seals_retention_events_and_gc_keeps_working(store_dir, make_md, rng):
    from cas_repo.maintenance import RetentionPolicy, apply_retention

    secret = "k" * 32
    with ModelStore(store_dir, key=secret, backend_options={"fsync": False}) as keyed:
        for i in range(3):
            keyed.save_model({"w": rng.standard_normal(5_000), "i": i}, make_md("m"))
        apply_retention(keyed, RetentionPolicy(keep_last=1))
        assert run_gc(keyed, grace=NO_GRACE, purge_older_than=NO_GRACE).purged == (("m", 1), ("m", 2))
        assert fsck(keyed, full=True).findings == ()  # every record, retention ones too, is sealed
        keyed.load_model("m")
    with ModelStore(store_dir, key="another key of 32 bytes........", backend_options={"fsync": False}) as wrong:
        report = fsck(wrong)
        assert {f.code for f in report.findings} == {"record-seal"} and len(report.findings) == 7  # 3+2+2 events


def test_a_load_holding_old_locations_survives_a_repack_of_its_pack(store, store_dir, make_md, rng, monkeypatch):
    """A reader takes its locations under the lock and reads later; a repack in between moves
    the rows, but the old pack stays for a grace period, so the read still finds its bytes."""
    shared = rng.standard_normal(20_000)
    store.save_model({"s": shared, "own": rng.standard_normal(80_000)}, make_md("a"))
    store.save_model({"s": shared, "own": rng.standard_normal(1_000)}, make_md("b"))  # dedups onto a's pack
    store.delete_model("a")
    age_store(store_dir, 3)
    real_read, ran = store.objects.read_many, []

    def gc_before_the_first_read(locs):
        if not ran:
            ran.append(None)  # gc reads too: run it once
            ran[0] = run_gc(store, grace=timedelta(hours=1), purge_older_than=NO_GRACE)
        return real_read(locs)

    monkeypatch.setattr(store.objects, "read_many", gc_before_the_first_read)
    model, _ = store.load_model("b")
    monkeypatch.undo()
    [gc] = ran
    assert len(gc.repacked) == 1 and gc.deleted == ()  # b's shared chunk really moved under the reader
    assert np.array_equal(model["s"], shared)
    assert run_gc(store, grace=timedelta(hours=1)).deleted == ()  # still inside its renewed grace
    store.load_model("b")
