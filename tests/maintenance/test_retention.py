"""Retention policies: tombstones, never deletions; undoable until gc purges them by age."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from cas_repo.errors import ModelPurgedError, RetentionPolicyError
from cas_repo.maintenance import RetentionPolicy, apply_retention, restore_versions, run_gc
from cas_repo.maintenance.common import utcnow

from .conftest import NO_GRACE


@pytest.fixture
def five(store, make_md, rng):
    """m@1..5 with IC 0.00, 0.01, …; n@1..2; a deleted model d@1."""
    for i in range(5):
        store.save_model({"w": rng.standard_normal(2_000), "i": i}, make_md("m", IC=0.01 * i))
    for _ in range(2):
        store.save_model({"w": rng.standard_normal(2_000)}, make_md("n", IC=0.5))
    store.save_model({"w": 1}, make_md("d"))
    store.delete_model("d")
    return store


def refs(report):
    return [v.ref for v in report.retired]


def event_count(store):
    with store.catalog.session() as s:
        return s.con.execute("SELECT count(*) FROM events").fetchone()[0]


def test_keep_last_retires_older_versions_never_heads_nor_deleted_models(five):
    before = event_count(five)
    dry = apply_retention(five, RetentionPolicy(keep_last=2), dry_run=True)
    assert refs(dry) == ["m@1", "m@2", "m@3"] and dry.dry_run
    assert event_count(five) == before  # a dry run records nothing
    real = apply_retention(five, RetentionPolicy(keep_last=2))
    assert refs(real) == refs(dry)
    assert event_count(five) == before + 3
    assert refs(apply_retention(five, RetentionPolicy(keep_last=2))) == []  # already retired
    five.load_model("m", 1)  # a tombstone, not a deletion: still loadable until gc purges it
    assert [m.model_id for m in five.list_models()] == ["n", "m"]


def test_retired_versions_can_be_restored_until_purged(five):
    apply_retention(five, RetentionPolicy(keep_last=1))
    undo = restore_versions(five, [("m", 2), ("m", 5), ("n", None)])
    assert undo.restored == ("m@2", "n@1") and undo.not_retired == ("m@5",)
    report = run_gc(five, grace=NO_GRACE, purge_older_than=NO_GRACE)
    assert sorted(report.purged) == [("d", 1), ("m", 1), ("m", 3), ("m", 4)]
    five.load_model("m", 2)
    five.load_model("n", 1)
    with pytest.raises(ModelPurgedError):
        five.load_model("m", 3)
    assert restore_versions(five, [("m", 3)]).purged == ("m@3",)


def test_gc_purges_retired_versions_only_once_old_enough(five):
    apply_retention(five, RetentionPolicy(keep_last=4))
    assert run_gc(five, grace=NO_GRACE, purge_older_than=timedelta(days=30)).purged == ()
    five.load_model("m", 1)
    assert run_gc(five, grace=NO_GRACE, purge_older_than=NO_GRACE).purged == (("d", 1), ("m", 1))


def test_keep_tagged_protects_anything_ever_tagged(five):
    five.set_tags("m", {"stage": "prod"}, version=2)
    five.set_tags("m", {"stage": None}, version=2)  # removed since: still "ever tagged"
    five.set_tags("m", {"stage": "canary"}, version=3)
    report = apply_retention(five, RetentionPolicy(keep_last=1, keep_tagged=("stage=prod",)))
    assert refs(report) == ["m@1", "m@3", "m@4", "n@1"]
    assert [v.ref for v in report.protected] == ["m@2"]
    any_stage = apply_retention(five, RetentionPolicy(keep_last=1, keep_tagged=("stage",)), dry_run=True)
    assert refs(any_stage) == []


def test_tags_given_at_save_count_as_ever_tagged(store, make_md):
    store.save_model({"v": 1}, make_md("m", tags={"release": "2026.1"}))
    store.save_model({"v": 2}, make_md("m"))
    report = apply_retention(store, RetentionPolicy(keep_last=1, keep_tagged=("release",)), dry_run=True)
    assert refs(report) == [] and [v.ref for v in report.protected] == ["m@1"]


def test_sql_predicate_on_metrics_and_age(five):
    policy = RetentionPolicy(where="metrics['IC'] < 0.025", older_than=timedelta(days=90))
    assert refs(apply_retention(five, policy, dry_run=True)) == []  # nothing is 90 days old yet
    later = utcnow() + timedelta(days=91)
    assert refs(apply_retention(five, policy, dry_run=True, now=later)) == ["m@1", "m@2", "m@3"]
    by_age = RetentionPolicy(where="age_days > 90 AND experiment_name = 'exp' AND NOT list_contains(ever_tags, 'x=y')")
    assert refs(apply_retention(five, by_age, dry_run=True, now=later)) == ["m@1", "m@2", "m@3", "m@4", "n@1"]


@pytest.mark.parametrize("predicate", [
    "metrics['IC'] <",                                     # not SQL
    "true; DROP TABLE v_versions",                         # two statements
    "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0",  # no file access in the sandbox
    "(SELECT count(*) FROM versions) > 0",                 # the catalog is not reachable
])
def test_a_predicate_can_only_read_the_candidates(store, make_md, predicate):
    store.save_model({"v": 1}, make_md("m"))
    store.save_model({"v": 2}, make_md("m"))
    with pytest.raises(RetentionPolicyError) as info:
        apply_retention(store, RetentionPolicy(where=predicate))
    assert isinstance(info.value, ValueError)
    assert event_count(store) == 2  # nothing recorded


def test_a_policy_needs_a_criterion():
    with pytest.raises(RetentionPolicyError, match="keep-last"):
        RetentionPolicy(keep_tagged=("prod",))
    with pytest.raises(RetentionPolicyError):
        RetentionPolicy(keep_last=0)


def test_retirements_survive_a_catalog_rebuild(five, store_dir):
    from cas_repo import ModelStore
    from cas_repo.maintenance import rebuild_catalog

    apply_retention(five, RetentionPolicy(keep_last=3))
    restore_versions(five, [("m", 1)])
    five.close()
    rebuild_catalog(store_dir)
    with ModelStore(store_dir) as again:
        assert refs(apply_retention(again, RetentionPolicy(keep_last=3), dry_run=True)) == ["m@1"]
        assert run_gc(again, grace=NO_GRACE, purge_older_than=NO_GRACE).purged == (("d", 1), ("m", 2))
        assert np.asarray(again.load_model("m", 1)[0]["w"]).shape == (2000,)
