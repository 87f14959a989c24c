"""Dual track against a real Qlib Recorder (MLflow file store in a temp folder)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from cas_repo import CasModelRepository, ModelStore
from cas_repo.errors import (
    AmbiguousRecorderError,
    QlibNotInitializedError,
    QlibRecorderError,
    RecorderNotFoundError,
    StoreError,
)
from cas_repo.objects import LocalBackend
from cas_repo.qlib_support import synthetic as syn
from cas_repo.qlib_support.mlruns_import import import_mlruns
from cas_repo.qlib_support.recorder import flat_params, wait_for_logging


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


class SlowMetricWrites:
    """qlib's logging thread, made slow at the worst moment, deterministically.

    A metric write from any thread but the test's creates the metric file, then waits
    0.5 s before writing its line (mlflow's ``append_to`` opens the file before it
    writes). Once ``arm()``ed, the test thread's reads of a run (``get_run``, which
    ``save_objects`` calls) first wait until such a file exists: without a wait for qlib's
    logging they then meet it empty, as a busy machine sometimes schedules it.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from mlflow.store.tracking import file_store

        self.test_thread = threading.get_ident()
        self.created = threading.Event()
        self.armed = False
        append_to, get_run = file_store.append_to, file_store.FileStore.get_run

        def slow_append_to(path, data):
            if threading.get_ident() == self.test_thread:
                return append_to(path, data)
            with open(path, "a") as handle:
                self.created.set()
                time.sleep(0.5)
                handle.write(data)

        def gated_get_run(store, run_id):
            if self.armed and threading.get_ident() == self.test_thread:
                assert self.created.wait(10), "the logging thread never wrote the metric"
            return get_run(store, run_id)

        monkeypatch.setattr(file_store, "append_to", slow_append_to)
        monkeypatch.setattr(file_store.FileStore, "get_run", gated_get_run)

    def arm(self) -> None:
        self.created.clear()
        self.armed = True


@pytest.fixture
def slow_metric_writes(monkeypatch):
    return SlowMetricWrites(monkeypatch)


def test_save_objects_after_async_metrics_races_unless_logging_is_waited_for(qlib_R, slow_metric_writes):
    with pytest.raises(ValueError, match="Metric 'loss' is malformed"), \
            qlib_R.start(experiment_name="race", recorder_name="bare"):  # qlib as it is
        qlib_R.log_metrics(step=0, loss=0.3)
        slow_metric_writes.arm()
        qlib_R.save_objects(**{"m.pkl": [1]})

    with qlib_R.start(experiment_name="race", recorder_name="waited"):
        qlib_R.log_metrics(step=0, loss=0.3)
        slow_metric_writes.arm()
        recorder = qlib_R.get_recorder()
        wait_for_logging(recorder)
        qlib_R.save_objects(**{"m.pkl": [1]})
        qlib_R.log_metrics(step=1, loss=0.2)  # still queued to a thread, and end_run waits for it
        qlib_R.set_tags(after="wait")
    assert recorder.list_metrics() == {"loss": 0.2}
    assert recorder.list_tags()["after"] == "wait" and recorder.load_object("m.pkl") == [1]
    wait_for_logging(recorder)  # after end_run: nothing queued, nothing to do
    assert recorder.async_log is None


def test_dual_track_waits_for_the_callers_queued_metrics(tmp_path, qlib_R, make_md, slow_metric_writes):
    with ModelStore(tmp_path / "cas", use_qlib_recorder=True) as store:
        with qlib_R.start(experiment_name="workflow"):
            qlib_R.log_metrics(step=0, loss=0.3)  # as LGBModel.fit does every round
            slow_metric_writes.arm()
            md = make_md("inner", experiment="alpha", IC=0.05)
            store.save_model({"w": 1}, md)  # its save_objects reads the run back
            recorder = qlib_R.get_recorder()
        assert recorder.list_metrics() == {"loss": 0.3, "IC": 0.05}
        assert recorder.list_tags()["cas_repo.ref"] == "inner@1"
        assert store.load_model_by_recorder(md.qlib_recorder_id)[0] == {"w": 1}


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
