"""rebuild-catalog: delete the catalog, rebuild it from the packs, and get every fact back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from cas_repo import CatalogCorruptError, ModelStore
from cas_repo.digest import hash_bytes
from cas_repo.location import CHUNK, RECORD
from cas_repo.maintenance import RetentionPolicy, apply_retention, fsck, rebuild_catalog, run_gc
from cas_repo.manifest import EventRecord
from cas_repo.objects.store import NewEntry

CATALOG_TABLES = {
    "versions": "model_id, version, manifest, record, kind, rollback_of, experiment_name, model_type, created_at, "
                "saved_at, qlib_recorder_id, logical_size, metrics, hyperparameters, lineage, metadata_json, "
                "parents, tags",
    "lineage": "*", "tags": "*", "events": "*", "manifest_chunks": "*", "objects": "*",
    "packs": "pack, size, entries",
    "models": "model_id, experiment_name, model_type, head_version, last_seq, deleted",
}


def snapshot(store: ModelStore, skip: tuple[str, ...] = ()) -> dict:
    """Everything a user can see, through the API and in the catalog's tables."""
    out = {"models": [(m.model_id, m.version, m.deleted, m.digest, m.tags, m.parents, m.metrics)
                      for m in store.list_models(include_deleted=True)]}
    for md in store.list_models(include_deleted=True):
        out[md.model_id] = store.history(md.model_id)
    with store.catalog.session() as s:
        for table, cols in CATALOG_TABLES.items():
            if table in skip:
                continue
            out[table] = s.con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()
    return out


@pytest.fixture
def busy(store, make_md, rng):
    """Saves, lineage, rollbacks, tags set and removed, deletes and undeletes, retirement, purge."""
    base = rng.standard_normal(30_000)
    store.save_model({"w": base}, make_md("lgbm", tags={"stage": "dev"}, IC=0.03))
    store.save_model({"w": base, "more": rng.standard_normal(3_000)},
                     make_md("lgbm", parents=["lgbm@1"], IC=0.04, hyperparameters={"lr": 0.05, "nested": [1, {"a": None}]}))
    store.rollback("lgbm", 1)
    store.set_tags("lgbm", {"stage": "prod"}, version=2)
    store.set_tags("lgbm", {"stage": None, "owner": "kim"}, version=1)
    md = make_md("mlp", model_type="MLP", experiment="deep", parents=["lgbm@2"])
    md.qlib_recorder_id = "rec-1"
    md.lineage = {"segments": {"train": ["2020-01-01", "2020-06-30"]}}
    store.save_model({"w": rng.standard_normal(4_000)}, md)
    store.delete_model("mlp")
    store.undelete_model("mlp")
    store.save_model({"w": 1}, make_md("gone"))
    store.delete_model("gone")
    for i in range(3):
        store.save_model({"w": rng.standard_normal(1_000), "i": i}, make_md("old"))
    apply_retention(store, RetentionPolicy(keep_last=1))
    run_gc(store, grace=timedelta(0), purge_older_than=timedelta(0))
    run_gc(store, grace=timedelta(0))  # and the repacked packs go: the store holds no garbage
    store.save_model({"w": 2}, make_md("gone2"))
    store.delete_model("gone2")  # tombstoned, not purged
    return store


def test_delete_the_catalog_rebuild_and_everything_is_back(busy, store_dir):
    before = snapshot(busy)
    busy.close()
    (store_dir / "catalog.duckdb").unlink()
    report = rebuild_catalog(store_dir)
    assert report.problems == () and report.superseded == 0 and report.before is None
    assert report.moved_aside == ()
    with ModelStore(store_dir) as store:
        after = snapshot(store)
        assert after == before
        assert fsck(store, full=True).findings == ()
        store.load_model("lgbm")
        store.load_model("mlp")
        assert store.load_model("lgbm", 3)[1].rollback_of == 1
        assert [m.deleted for m in store.history("gone2")] == [True]


def test_a_corrupt_catalog_is_moved_aside_not_deleted(busy, store_dir):
    before = snapshot(busy)
    busy.close()
    catalog = store_dir / "catalog.duckdb"
    garbage = b"this is not a duckdb file" * 100
    catalog.write_bytes(garbage)
    with pytest.raises(CatalogCorruptError, match="rebuild-catalog"):
        ModelStore(store_dir)
    report = rebuild_catalog(store_dir)
    [aside] = report.moved_aside
    assert open(aside, "rb").read() == garbage
    with ModelStore(store_dir) as store:
        assert snapshot(store) == before


def test_a_healthy_catalog_is_kept_beside_the_new_one(busy, store_dir):
    busy.close()
    report = rebuild_catalog(store_dir)
    assert report.before == (report.models, report.events) and len(report.moved_aside) == 1


def test_an_interrupted_commit_is_superseded_by_the_event_that_took_its_seq(store, store_dir, make_md):
    store.save_model({"w": 1}, make_md("m"))
    # A save of version 2 wrote its record, then died before its catalog commit.
    orphan = EventRecord("save", "m", 2, 2, datetime.now(timezone.utc) - timedelta(seconds=5),
                         None, {"experiment_name": "x"})
    data = orphan.to_bytes()
    store.objects.write([NewEntry(hash_bytes(data), RECORD, data, compress=False)])
    store.delete_model("m")  # the real event 2
    before = snapshot(store, skip=("objects", "packs"))  # the rebuilt index also lists the leftover pack
    store.close()
    report = rebuild_catalog(store_dir)
    assert report.superseded == 1 and report.problems == ()
    with ModelStore(store_dir) as again:
        assert snapshot(again, skip=("objects", "packs")) == before


def test_rebuild_reports_a_record_it_cannot_replay(store, store_dir, make_md):
    store.save_model({"w": np.arange(10)}, make_md("m"))
    missing = EventRecord("save", "m", 2, 2, datetime.now(timezone.utc), hash_bytes(b"no such manifest"),
                          {"experiment_name": "e", "model_type": "t", "created_at": "2026-01-01T00:00:00",
                           "hyperparameters": {}, "metrics": {}})
    data = missing.to_bytes()
    store.objects.write([NewEntry(hash_bytes(data), RECORD, data, compress=False)])
    store.close()
    report = rebuild_catalog(store_dir)
    assert any("m@2" in p and "manifest is missing" in p for p in report.problems)


def test_a_damaged_record_falls_back_to_another_copy(store, store_dir, make_md):
    import os

    from .conftest import pack_path, rewrite

    store.save_model({"w": np.arange(10)}, make_md("m"))
    store.delete_model("m")
    before = snapshot(store, skip=("objects", "packs"))
    with store.catalog.session() as s:
        record = s.con.execute("SELECT record FROM events WHERE kind = 'delete'").fetchone()[0]
        loc = s.present([record])[record]
    data = store.objects.read(loc)
    # A second copy of the record (beside another entry, so the pack is not the same bytes).
    store.objects.write([NewEntry(loc.digest, RECORD, data, compress=False), NewEntry(hash_bytes(b"pad"), CHUNK, b"pad")])
    rewrite(pack_path(store_dir, loc.pack), lambda d: d.__setitem__(loc.offset + 3, d[loc.offset + 3] ^ 1))
    os.utime(pack_path(store_dir, loc.pack), (0, 0))  # the damaged copy is the oldest, so tried first
    store.close()
    report = rebuild_catalog(store_dir)
    assert report.problems == ()
    with ModelStore(store_dir) as again:
        assert snapshot(again, skip=("objects", "packs")) == before


def test_a_keyed_rebuild_replays_only_sealed_records(store_dir, make_md):
    secret = "s" * 32
    with ModelStore(store_dir, key=secret) as keyed:
        keyed.save_model({"w": 1}, make_md("m"))
        keyed.save_model({"w": 2}, make_md("m"))
        planted = EventRecord("purge", "m", 3, 2, datetime.now(timezone.utc), metadata={"reason": "forged"})
        data = planted.to_bytes()  # not sealed: whoever wrote it had no key
        keyed.objects.write([NewEntry(hash_bytes(data), RECORD, data, compress=False)])
        before = snapshot(keyed, skip=("objects", "packs"))
    report = rebuild_catalog(store_dir, key=secret)
    assert len(report.problems) == 1 and "not replayed" in report.problems[0]
    with ModelStore(store_dir, key=secret) as again:
        assert snapshot(again, skip=("objects", "packs")) == before
        again.load_model("m", 2)
