"""Dual track against a real Qlib Recorder (MLflow file store in a temp folder)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cas_repo import CasModelRepository, ModelStore
from cas_repo.errors import (AmbiguousRecorderError, QlibNotInitializedError, QlibRecorderError,
                             RecorderNotFoundError, StoreError)
from cas_repo.objects import LocalBackend
from cas_repo.qlib_support import synthetic as syn
from cas_repo.qlib_support.mlruns_import import import_mlruns
from cas_repo.qlib_support.recorder import flat_params


@pytest.fixture(scope="module")
def dataset():
    return syn.make_dataset(n_instruments=20, n_days=100)


@pytest.fixture(scope="module")
def model(dataset):
    return syn.train_lgbm(dataset, num_boost_round=20)


@pytest.fixture
def qlib_R(tmp_path):
    with syn.offline_qlib(tmp_path / "qlib") as R:
        yield R


def test_save_logs_to_the_recorder_and_loads_back_by_recorder_id(tmp_path, qlib_R, make_md,
                                                                  dataset, model):
    with ModelStore(tmp_path / "cas", use_qlib_recorder=True) as store:
        md = make_md("lgbm", experiment="alpha", hyperparameters={"lr": 0.05, "tree": {"leaves": 31}},
                     tags={"universe": "csi300"}, IC=0.05, ICIR=1.2)
        store.save_model(model, md, dataset=dataset)
        rid = md.qlib_recorder_id
        assert rid and md.version == 1
        assert md.lineage["recorder"] == {
            "source": "dual-track", "experiment_name": "alpha", "recorder_id": rid, "run_name": "lgbm",
            "artifact": "lgbm.pkl", "experiment_id": md.lineage["recorder"]["experiment_id"]}
        stored = store.get_model_metadata("lgbm")
        assert stored.qlib_recorder_id == rid and stored.lineage == md.lineage
        assert "dataset" in stored.lineage

        recorder = qlib_R.get_recorder(recorder_id=rid, experiment_name="alpha")
        assert recorder.list_params()["tree.leaves"] == "31"
        assert recorder.list_metrics() == {"IC": 0.05, "ICIR": 1.2}
        tags = recorder.list_tags()
        assert tags["universe"] == "csi300" and tags["cas_repo.model_id"] == "lgbm"
        assert tags["cas_repo.ref"] == "lgbm@1"
        expected = syn.predict(model, dataset)
        np.testing.assert_array_equal(syn.predict(recorder.load_object("lgbm.pkl"), dataset), expected)

        loaded, lmd = store.load_model_by_recorder(rid)
        assert (lmd.model_id, lmd.version, lmd.qlib_recorder_id) == ("lgbm", 1, rid)
        np.testing.assert_array_equal(syn.predict(loaded, dataset), expected)
        # A rollback copies the metadata; loading by recorder id still finds the save.
        store.save_model(model, make_md("lgbm", experiment="alpha"))
        store.rollback("lgbm", 1)
        assert store.load_model_by_recorder(rid)[1].version == 1


def test_async_facade_dual_track(tmp_path, qlib_R, make_md, model):
    async def run():
        async with CasModelRepository(tmp_path / "cas", use_qlib_recorder=True) as repo:
            md = make_md("lgbm_async", experiment="alpha")
            assert await repo.save_model(model, md) == "lgbm_async"
            _, loaded = await repo.load_model_by_recorder(md.qlib_recorder_id)
            return md, loaded

    md, loaded = asyncio.run(run())
    assert loaded.model_id == "lgbm_async" and loaded.qlib_recorder_id == md.qlib_recorder_id


def test_without_qlib_init_the_error_is_clear_and_nothing_is_saved(tmp_path, make_md, monkeypatch):
    from qlib.workflow import R

    monkeypatch.setattr(R, "_provider", None)  # exactly qlib's state before qlib.init()
    with ModelStore(tmp_path / "cas", use_qlib_recorder=True) as store:
        with pytest.raises(QlibNotInitializedError, match=r"qlib\.init") as info:
            store.save_model({"w": 1}, make_md("m"))
        assert isinstance(info.value, QlibRecorderError)
        assert store.list_models() == [] and store.stats().versions == 0


def test_mlflow_failure_is_translated_and_nothing_is_saved(tmp_path, qlib_R, make_md, monkeypatch):
    with ModelStore(tmp_path / "cas", use_qlib_recorder=True) as store:
        monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # mlflow now refuses its file store
        with pytest.raises(QlibRecorderError, match="MLFLOW_ALLOW_FILE_STORE") as info:
            store.save_model({"w": 1}, make_md("m"))
        assert info.value.__cause__ is not None
        assert store.stats().versions == 0
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        md = make_md("m")
        store.save_model({"w": 1}, md)  # the failed attempt left no run active
        assert store.load_model_by_recorder(md.qlib_recorder_id)[0] == {"w": 1}


def test_a_failed_commit_leaves_a_tagged_run_that_import_adopts(tmp_path, qlib_R, make_md, model,
                                                                dataset, monkeypatch):
    root = tmp_path / "cas"
    store = ModelStore(root, use_qlib_recorder=True)
    md = make_md("lgbm", experiment="alpha")

    def disk_full(self, key, data):
        raise StoreError(f"could not write {key}: No space left on device")

    with monkeypatch.context() as m:  # the commit fails as on a full disk
        m.setattr(LocalBackend, "create", disk_full)
        with pytest.raises(StoreError):
            store.save_model(model, md)
    store.close()
    rid = md.qlib_recorder_id
    recorder = qlib_R.get_recorder(recorder_id=rid, experiment_name="alpha")
    assert recorder.list_tags()["cas_repo.error"].startswith("StoreError")
    with ModelStore(root) as plain:
        assert plain.list_models() == []
        report = import_mlruns(plain, tmp_path / "qlib" / "mlruns", experiment="alpha")
        assert report.created == ("lgbm@1",)
        loaded, lmd = plain.load_model_by_recorder(rid)
        assert lmd.model_id == "lgbm" and lmd.lineage["recorder"]["source"] == "import-mlruns"
        np.testing.assert_array_equal(syn.predict(loaded, dataset), syn.predict(model, dataset))


def test_inside_an_open_run_the_save_goes_to_that_run(tmp_path, qlib_R, make_md):
    with ModelStore(tmp_path / "cas", use_qlib_recorder=True) as store:
        with qlib_R.start(experiment_name="workflow"):
            qlib_R.log_params(num_leaves=99)
            md = make_md("inner", experiment="alpha", hyperparameters={"num_leaves": 31, "lr": 0.1})
            store.save_model({"w": 1}, md)
            recorder = qlib_R.get_recorder()
            assert md.qlib_recorder_id == recorder.id
        assert md.lineage["recorder"]["experiment_name"] == "workflow"
        params = recorder.list_params()
        assert params["num_leaves"] == "99" and "lr" not in params  # the run's params are its own
        assert recorder.list_tags()["cas_repo.ref"] == "inner@1"
        assert recorder.load_object("inner.pkl") == {"w": 1}


def test_load_by_recorder_errors(tmp_path, qlib_R, store):
    with pytest.raises(RecorderNotFoundError, match="import-mlruns") as info:
        store.load_model_by_recorder("0" * 32)
    assert isinstance(info.value, FileNotFoundError)
    with qlib_R.start(experiment_name="two"):
        qlib_R.save_objects(**{"a.pkl": [1], "b.pkl": [2]})
        rid = qlib_R.get_recorder().id
    import_mlruns(store, tmp_path / "qlib" / "mlruns", experiment="two")
    with pytest.raises(AmbiguousRecorderError, match="artifact="):
        store.load_model_by_recorder(rid)
    assert store.load_model_by_recorder(rid, artifact="b.pkl")[0] == [2]


def test_many_params_and_metrics_are_logged_in_batches(tmp_path, qlib_R, make_md):
    hyper = {f"p{i:03d}": i for i in range(150)}
    metrics = {f"m{i:04d}": i / 10 for i in range(1200)}
    with ModelStore(tmp_path / "cas", use_qlib_recorder=True) as store:
        md = make_md("wide", experiment="alpha", hyperparameters=hyper, **metrics)
        store.save_model([1], md)
    recorder = qlib_R.get_recorder(recorder_id=md.qlib_recorder_id, experiment_name="alpha")
    params = recorder.list_params()
    params.pop("cmd-sys.argv", None)  # qlib logs the command line itself
    assert params == {k: str(v) for k, v in hyper.items()}
    assert recorder.list_metrics() == metrics


def test_flat_params():
    assert flat_params({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": {}}) == {
        "a.b": "1", "a.c.d": "x", "e": "[1, 2]", "f": "{}"}
    assert len(flat_params({"long": "x" * 10_000})["long"]) == 6000
