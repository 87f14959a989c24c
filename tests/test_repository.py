"""ModelStore behaviour: versions, dedup, rollback, tombstones, history, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cas_repo import CasRepoError, InvalidModelIdError, ModelDeletedError, ModelNotFoundError, ModelStore
from cas_repo.errors import InvalidMetadataError, SerializationError


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("catalog"))


def test_versions_count_up_and_load_by_number(store, make_md):
    for i in range(3):
        md = make_md(IC=0.01 * i)
        assert store.save_model({"w": np.full(1000, i)}, md) == "m1"
        assert md.version == i + 1
    for v in (1, 2, 3):
        model, md = store.load_model("m1", v)
        assert model["w"][0] == v - 1 and md.version == v and md.metrics == {"IC": 0.01 * (v - 1)}
    assert store.load_model("m1")[1].version == 3


def test_identical_content_writes_no_new_content_bytes(store, make_md):
    model = {"w": np.random.default_rng(0).standard_normal(200_000)}
    md1, md2 = make_md(), make_md()
    store.save_model(model, md1)
    before = store.stats()
    store.save_model(model, md2)
    after = store.stats()
    assert md1.digest == md2.digest
    assert after.versions == before.versions + 1
    assert after.unique_bytes == before.unique_bytes
    # No object at all: the new version is one commit in the log, naming the old manifest.
    assert after.objects == before.objects and after.packs == before.packs
    assert after.physical_bytes == before.physical_bytes
    assert after.logical_bytes == 2 * before.logical_bytes


def test_same_content_under_two_ids_shares_everything(store, make_md):
    model = {"w": np.arange(300_000)}
    a, b = make_md("a"), make_md("b")
    store.save_model(model, a)
    unique = store.stats().unique_bytes
    store.save_model(model, b)
    assert a.digest == b.digest
    assert store.stats().unique_bytes == unique


def test_metadata_round_trips_exactly(store, make_md):
    md = make_md(hyperparameters={"lr": 0.05, "layers": [64, 32], "opt": {"name": "adam", "beta": None}},
                 tags={"dataset": "csi300"}, IC=0.051, ICIR=1.2)
    md.qlib_recorder_id = "abc123"
    md.lineage = {"segments": {"train": ["2020-01-01", "2020-06-30"]}}
    store.save_model([1, 2, 3], md)
    got = store.get_model_metadata("m1")
    for field in ("model_id", "experiment_name", "model_type", "hyperparameters", "metrics",
                  "created_at", "qlib_recorder_id", "tags", "lineage", "version", "digest"):
        assert getattr(got, field) == getattr(md, field), field


def test_rollback_appends_a_version_with_old_content(store, make_md):
    store.save_model({"v": 1}, make_md(IC=0.1))
    store.save_model({"v": 2}, make_md(IC=0.2))
    objects = store.stats().objects
    new = store.rollback("m1", 1)
    assert new == 3
    model, md = store.load_model("m1")
    assert model == {"v": 1} and md.version == 3 and md.rollback_of == 1 and md.metrics == {"IC": 0.1}
    assert md.digest == store.get_model_metadata("m1", 1).digest
    assert store.stats().objects == objects  # no object: one commit in the log
    assert [h.version for h in store.history("m1")] == [1, 2, 3]


def test_delete_hides_the_model_and_undelete_brings_it_back(store, make_md):
    store.save_model({"v": 1}, make_md("keep"))
    store.save_model({"v": 2}, make_md("gone"))
    store.delete_model("gone")
    with pytest.raises(ModelDeletedError) as info:
        store.load_model("gone")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ModelNotFoundError)
    assert "undelete" in str(info.value)
    assert [m.model_id for m in store.list_models()] == ["keep"]
    assert {m.model_id: m.deleted for m in store.list_models(include_deleted=True)} == {"keep": False, "gone": True}
    assert store.load_model("gone", 1)[0] == {"v": 2}  # history stays readable
    with pytest.raises(ModelDeletedError):
        store.rollback("gone", 1)
    store.delete_model("gone")  # idempotent
    store.undelete_model("gone")
    assert store.load_model("gone")[0] == {"v": 2}
    assert store.history("gone")[-1].deleted is False


def test_list_models_filters_and_orders_newest_first(store, make_md):
    store.save_model(1, make_md("a", experiment="e1", model_type="LGBM"))
    store.save_model(2, make_md("b", experiment="e2", model_type="MLP"))
    store.save_model(3, make_md("c", experiment="e1", model_type="MLP"))
    store.save_model(4, make_md("a", experiment="e1", model_type="LGBM"))
    assert [m.model_id for m in store.list_models()] == ["a", "c", "b"]
    assert [m.model_id for m in store.list_models(experiment_name="e1")] == ["a", "c"]
    assert [m.model_id for m in store.list_models(model_type="MLP")] == ["c", "b"]
    assert [m.model_id for m in store.list_models("e1", "MLP")] == ["c"]
    assert store.list_models()[0].version == 2


def test_parents_and_tags(store, make_md):
    store.save_model(1, make_md("base"))
    child = make_md("child", parents=["base@1"], tags={"stage": "dev"})
    store.save_model(2, child)
    assert store.get_model_metadata("child").parents == ["base@1"]
    store.set_tags("child", {"stage": "prod", "owner": "qr"})
    assert store.get_model_metadata("child").tags == {"owner": "qr", "stage": "prod"}
    store.set_tags("child", {"owner": None})
    assert store.get_model_metadata("child").tags == {"stage": "prod"}


def test_unknown_ids_and_versions(store, make_md):
    with pytest.raises(ModelNotFoundError) as info:
        store.load_model("nope")
    assert isinstance(info.value, FileNotFoundError) and "nope" in str(info.value)
    store.save_model(1, make_md())
    with pytest.raises(ModelNotFoundError, match="version 9"):
        store.load_model("m1", 9)
    with pytest.raises(ModelNotFoundError):
        store.history("nope")
    with pytest.raises(ModelNotFoundError):
        store.delete_model("nope")
    with pytest.raises(ModelNotFoundError):
        store.rollback("m1", 5)
    with pytest.raises(InvalidMetadataError):
        store.load_model("m1", 0)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x\x00y", "a" * 200, "/abs", "-lead", "ü", "a b", None, 5])
def test_invalid_ids_are_rejected_and_write_nothing(store, store_dir, make_md, bad):
    before = _files(store_dir)
    md = make_md()
    md.model_id = bad
    with pytest.raises(InvalidModelIdError) as info:
        store.save_model({"x": 1}, md)
    assert isinstance(info.value, ValueError) and isinstance(info.value, CasRepoError)
    assert _files(store_dir) == before
    assert store.stats().versions == 0
    if isinstance(bad, str):
        with pytest.raises(InvalidModelIdError):
            store.load_model(bad)


@pytest.mark.parametrize("field,value", [
    ("metrics", {"IC": float("nan")}),
    ("metrics", {"IC": float("inf")}),
    ("metrics", {"IC": "high"}),
    ("hyperparameters", {"f": object()}),
    ("hyperparameters", {1: "int key"}),
    ("tags", {"k": 1}),
    ("parents", ["no-version"]),
    ("created_at", "2024-01-01"),
    ("experiment_name", ""),
])
def test_bad_metadata_is_refused_before_anything_is_written(store, store_dir, make_md, field, value):
    md = make_md()
    setattr(md, field, value)
    before = _files(store_dir)
    with pytest.raises(InvalidMetadataError):
        store.save_model({"x": 1}, md)
    assert _files(store_dir) == before


def test_unpicklable_model_is_a_serialization_error(store, make_md, store_dir):
    before = _files(store_dir)
    with pytest.raises(SerializationError, match="cannot serialize"):
        store.save_model({"f": lambda x: x}, make_md())
    assert _files(store_dir) == before


def test_load_models_batch_keeps_order(store, make_md):
    for name in ("a", "b", "c"):
        store.save_model({"name": name}, make_md(name))
    got = store.load_models(["c", "a", "b"])
    assert [m["name"] for m, _ in got] == ["c", "a", "b"]
    assert [md.model_id for _, md in got] == ["c", "a", "b"]


def test_reopen_sees_everything(store_dir, make_md):
    with ModelStore(store_dir) as s:
        s.save_model({"x": 1}, make_md())
        s.save_model({"x": 2}, make_md())
    with ModelStore(store_dir) as s:
        assert s.load_model("m1")[0] == {"x": 2}
        s.rollback("m1", 1)
    with ModelStore(store_dir) as s:
        assert [(h.version, h.rollback_of) for h in s.history("m1")] == [(1, None), (2, None), (3, 1)]


def test_exclusive_is_accepted_but_no_longer_locks_anyone_out(store_dir, make_md):
    with pytest.warns(DeprecationWarning, match="exclusive"):
        first = ModelStore(store_dir, exclusive=True)
    with first, ModelStore(store_dir, lock_timeout=0.2) as second:
        first.save_model(1, make_md())
        second.save_model(2, make_md())
        assert first.load_model("m1")[0] == 2 and second.get_model_metadata("m1").version == 2


def test_store_layout_uses_digests_only(store, store_dir, make_md):
    store.save_model({"x": np.arange(100_000)}, make_md("secret-model-name"))
    for p in store_dir.rglob("*"):
        assert "secret" not in str(p)
    files = [p.relative_to(store_dir / "objects") for p in (store_dir / "objects").rglob("*") if p.is_file()]
    packs = [p for p in files if p.parts[:2] == ("packs", "blake3")]
    commits = [p for p in files if p.parts[0] == "log"]
    assert packs and commits and len(packs) + len(commits) == len(files)
    assert [p.name for p in commits] == ["00000000000000000001"]
    assert all(not os.access(store_dir / "objects" / p, os.W_OK) or os.geteuid() == 0 for p in files)


def test_unchanged_large_model_resave_writes_no_pack(store, make_md):
    model = {"w": np.random.default_rng(0).standard_normal(1_500_000)}
    store.save_model(model, make_md("big"))
    before = store.stats()
    store.save_model(model, make_md("big"))
    after = store.stats()
    assert after.packs == before.packs and after.physical_bytes == before.physical_bytes
    assert store.load_model("big")[0]["w"].tobytes() == model["w"].tobytes()
