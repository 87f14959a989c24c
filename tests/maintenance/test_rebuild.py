"""rebuild-catalog: throw the index away, fold the log again, and get every fact back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cas_repo import ModelStore
from cas_repo.errors import IntegrityError
from cas_repo.log.ops import EventOp
from cas_repo.maintenance import RetentionPolicy, apply_retention, fsck, rebuild_catalog, run_gc

from ..commits import hand_made

CATALOG_TABLES = {
    "versions": "*", "lineage": "*", "tags": "*", "events": "*", "event_tags": "*", "manifest_chunks": "*",
    "objects": "*", "packs": "*", "models": "*", "log_index": "*",
}


def snapshot(store: ModelStore) -> dict:
    """Everything a user can see, through the API and in the catalog's tables."""
    out = {"models": [(m.model_id, m.version, m.deleted, m.digest, m.tags, m.parents, m.metrics)
                      for m in store.list_models(include_deleted=True)]}
    for md in store.list_models(include_deleted=True):
        out[md.model_id] = store.history(md.model_id)
    with store.catalog.session() as s:
        for table, cols in CATALOG_TABLES.items():
            out[table] = [tuple(str(v) for v in r)
                          for r in s.con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()]
    return out


@pytest.fixture
def busy(store, make_md, rng):
    """Saves, lineage, rollbacks, tags set and removed, deletes and undeletes, retirement, purge."""
    base = rng.standard_normal(30_000)
    store.save_model({"w": base}, make_md("lgbm", tags={"stage": "dev"}, IC=0.03))
    store.save_model({"w": base, "more": rng.standard_normal(3_000)},
                     make_md("lgbm", parents=["lgbm@1"], IC=0.04,
                             hyperparameters={"lr": 0.05, "nested": [1, {"a": None}]}))
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
    store.save_model({"w": 2}, make_md("gone2"))
    store.delete_model("gone2")  # tombstoned, not purged
    return store


def test_delete_the_index_rebuild_and_everything_is_back(busy, store_dir):
    before = snapshot(busy)
    index, position = busy.catalog.path, busy.ledger.refresh()
    busy.close()
    index.unlink()
    report = rebuild_catalog(store_dir)
    assert report.problems == () and report.before is None and report.catalog == str(index)
    assert report.models == 5 and report.position == position
    with ModelStore(store_dir) as store:
        assert snapshot(store) == before
        assert fsck(store, full=True).findings == ()
        store.load_model("lgbm")
        store.load_model("mlp")
        assert store.load_model("lgbm", 3)[1].rollback_of == 1
        assert [m.deleted for m in store.history("gone2")] == [True]


def test_a_corrupt_index_is_set_aside_and_rebuilt_by_itself(busy, store_dir):
    before = snapshot(busy)
    index = busy.catalog.path
    busy.close()
    garbage = b"this is not a duckdb file" * 100
    index.write_bytes(garbage)
    with ModelStore(store_dir) as store:
        assert snapshot(store) == before  # the index is derived: no command needed
    [aside] = [p for p in index.parent.iterdir() if ".damaged-" in p.name]
    assert aside.read_bytes() == garbage


def test_a_healthy_index_is_counted_then_replaced(busy, store_dir):
    before = snapshot(busy)
    busy.close()
    report = rebuild_catalog(store_dir)
    assert report.before == (report.models, report.events) and report.problems == ()
    with ModelStore(store_dir) as store:
        assert snapshot(store) == before


def test_another_machines_index_folds_the_same_log_to_the_same_rows(busy, store_dir, tmp_path):
    with ModelStore(store_dir, catalog=tmp_path / "elsewhere.duckdb") as other:
        assert snapshot(other) == snapshot(busy)


def test_rebuild_reports_operations_the_fold_refuses(store, store_dir, make_md):
    store.save_model({"w": 1}, make_md("m"))
    bad = EventOp("m", 7, "delete", 1, datetime.now(UTC), "", True, {})
    assert store.ledger.log.create(2, hand_made(store, 2, (bad,)))
    store.close()
    report = rebuild_catalog(store_dir)
    assert report.position == 2 and len(report.problems) == 1 and "commit 2" in report.problems[0]
    with ModelStore(store_dir) as again:
        assert [m.deleted for m in again.list_models(include_deleted=True)] == [False]


def test_a_keyed_rebuild_stops_at_a_commit_not_sealed_by_the_key(store_dir, make_md):
    secret = "s" * 32
    with ModelStore(store_dir, key=secret) as keyed:
        keyed.save_model({"w": 1}, make_md("m"))
        keyed.save_model({"w": 2}, make_md("m"))
        # Whoever can write the bucket but has no key plants a purge.
        planted = hand_made(keyed, 3, (EventOp("m", 3, "delete", 2, datetime.now(UTC), "", True, {}),), "intruder",
                            sealed=False)
        assert keyed.objects.backend.create("log/" + "3".rjust(20, "0"), planted)
    with pytest.raises(IntegrityError, match="log commit 3"):
        rebuild_catalog(store_dir, key=secret)
    with ModelStore(store_dir, key=secret) as again:
        assert {f.code for f in fsck(again).findings} == {"log-unreadable"}
