"""qrun writes into the store: Qlib's own qrun entry point runs examples/workflow_lgbm_cas_repo.yaml
offline, once per module; the record's version and an import of the same run are checked."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import yaml

from cas_repo import ModelStore
from cas_repo.cli import main
from cas_repo.errors import InvalidAliasError, StoreError
from cas_repo.qlib_support import synthetic as syn
from cas_repo.qlib_support.metadata import hyperparameters_of
from cas_repo.qlib_support.mlruns_import import WORKFLOW_ARTIFACT, import_mlruns, model_id_for, scan_mlruns

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workflow_lgbm_cas_repo.yaml"
# One worker runs the module, so qrun runs once for the tests that share its run.
pytestmark = pytest.mark.xdist_group("qrun")


@pytest.fixture(scope="module")
def qrun(tmp_path_factory):
    """Run qrun on the example, as documented there: a folder holding frame.pkl, cwd in it."""
    from qlib.cli.run import workflow
    from qlib.workflow import R
    from qlib.workflow.recorder import MLflowRecorder

    tmp = tmp_path_factory.mktemp("qrun")
    syn.make_frame(n_instruments=20, n_days=120).to_pickle(tmp / "frame.pkl")
    with contextlib.ExitStack() as undo:
        undo.enter_context(mock.patch.dict(os.environ, {"MLFLOW_ALLOW_FILE_STORE": "true"}))
        undo.enter_context(contextlib.chdir(tmp))
        undo.enter_context(mock.patch.object(sys, "excepthook", sys.excepthook))
        # Outside a git checkout qlib's code logging only prints git's usage text.
        undo.enter_context(mock.patch.object(MLflowRecorder, "_log_uncommitted_code", lambda self: None))
        undo.enter_context(contextlib.redirect_stdout(io.StringIO()))  # qrun pprints its results
        try:
            workflow(str(EXAMPLE), experiment_name="unused", uri_folder="mlruns")
        finally:
            R.end_exp()  # R is usable only once qrun has called qlib.init: not registered earlier
    (run,) = scan_mlruns(tmp / "mlruns", "lgbm_synthetic")
    return tmp, run


def _dataset(task: dict, folder: Path):
    from qlib.utils import init_instance_by_config

    with contextlib.chdir(folder):  # the task reads frame.pkl relative to where qrun ran
        dataset = init_instance_by_config(task["dataset"])
        dataset.prepare("test")  # loads the frame now, inside the folder
    return dataset


def test_qrun_saves_the_model_with_metrics_task_and_alias(qrun):
    tmp, run = qrun
    config = yaml.safe_load(EXAMPLE.read_text())
    with ModelStore(tmp / "cas") as store:
        model, md = store.load_model("lgbm_synthetic@staging")
        assert (md.model_id, md.version, md.model_type) == ("lgbm_synthetic", 1, "LGBM")
        assert store.aliases("lgbm_synthetic") == {"staging": 1}
        assert store.load_model_by_recorder(run.run_id)[1].version == 1
    # Typed, as the YAML wrote them; the run's params hold the same as dotted text keys.
    assert md.hyperparameters == config["task"]["model"]["kwargs"]
    assert md.hyperparameters["num_boost_round"] == 20 and md.hyperparameters["deterministic"] is True
    assert run.params["model.kwargs.num_boost_round"] == "20"
    assert {"IC", "ICIR", "Rank IC", "Rank ICIR"} <= md.metrics.keys()
    assert md.metrics == run.metrics  # SigAnaRecord's and LightGBM's last values, as logged
    assert md.qlib_recorder_id == run.run_id and md.experiment_name == "lgbm_synthetic"
    assert md.tags == {"universe": "synthetic"}
    assert md.lineage["recorder"] == {
        "source": "qrun", "experiment_name": "lgbm_synthetic", "experiment_id": run.experiment_id,
        "recorder_id": run.run_id, "run_name": run.run_name, "artifact": "params.pkl"}
    assert md.lineage["dataset"]["segments"]["test"] == ["2020-05-01", "2020-06-16"]
    assert md.lineage["task"]["model"]["class"] == "LGBModel" and "record" not in md.lineage["task"]
    assert run.tags["cas_repo.ref"] == "lgbm_synthetic@1"
    # The stored model predicts exactly what qrun's SignalRecord saved, on the task's dataset.
    pred = pd.read_pickle(run.artifacts_dir / "pred.pkl")["score"]
    ours = model.predict(_dataset(md.lineage["task"], tmp), segment="test")
    pd.testing.assert_series_equal(ours, pred, check_names=False)


def test_import_mlruns_of_a_qrun_run_takes_only_the_model(qrun, tmp_path):
    tmp, run = qrun
    with ModelStore(tmp / "cas") as store:  # the version the record saved
        recorded = store.get_model_metadata("lgbm_synthetic", 1)
        again = import_mlruns(store, tmp / "mlruns")
        assert again.versions_created == 0 and again.already_imported == 1
        recorded_model = store.load_model("lgbm_synthetic", 1)[0]
    with ModelStore(tmp_path / "fresh") as fresh:
        report = import_mlruns(fresh, tmp / "mlruns")
        assert report.ok and report.created == ("lgbm_synthetic@1",)  # the record's tagged model_id
        skipped = {i.artifact: i.reason for i in report.skipped}
        assert set(skipped) == {"task", "config", "dataset", "pred.pkl", "label.pkl",
                                "sig_analysis/ic.pkl", "sig_analysis/ric.pkl"}
        assert set(skipped.values()) == {WORKFLOW_ARTIFACT}
        model, md = fresh.load_model("lgbm_synthetic")
    # One mapping: the import records what the record did, typed.
    assert md.hyperparameters == recorded.hyperparameters and md.metrics == recorded.metrics
    assert md.lineage["task"] == recorded.lineage["task"]
    assert md.lineage["recorder"]["artifact"] == "params.pkl"
    assert model.model.model_to_string() == recorded_model.model.model_to_string()
    # A run no record tagged is named after its experiment and model class.
    untagged = dataclasses.replace(run, tags={})
    assert model_id_for(untagged, "params.pkl", {"model": {"class": "LGBModel"}}) == "lgbm_synthetic.LGBModel"
    assert model_id_for(untagged, "params.pkl") == "lgbm_synthetic.params"

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--repo", str(tmp_path / "cli"), "import-mlruns", str(tmp / "mlruns")])
    assert code == 0, out.getvalue()
    assert "7 in 1 run(s) (config, dataset, label.pkl" in out.getvalue()
    with contextlib.redirect_stdout(io.StringIO()):  # asked for by name, predictions import too
        assert main(["--repo", str(tmp_path / "cli"), "import-mlruns", str(tmp / "mlruns"),
                     "--artifact", "pred.pkl"]) == 0
    with ModelStore(tmp_path / "cli") as cli:
        pd.testing.assert_frame_equal(cli.load_model("lgbm_synthetic.pred")[0],
                                      pd.read_pickle(run.artifacts_dir / "pred.pkl"))


def test_record_reads_port_analysis_metrics_from_a_real_recorder(tmp_path):
    """The record outside qrun: no task in the run, PortAnaRecord-style metrics, a NaN."""
    from cas_repo.qlib_support.qrun import CasRepoRecord

    dataset = syn.make_dataset(n_instruments=10, n_days=60)
    model = syn.train_lgbm(dataset, num_boost_round=5)
    logged = {"IC": 0.05, "Rank IC": 0.04, "1day.excess_return_with_cost.annualized_return": 0.12,
              "1day.excess_return_with_cost.max_drawdown": -0.08,
              "1day.excess_return_without_cost.information_ratio": 1.5, "1day.ffr": 1.0, "1day.pa": 0.0}
    with syn.offline_qlib(tmp_path / "q") as R:
        with R.start(experiment_name="port"):
            rec = R.get_recorder()
            rec.log_metrics(ICIR=float("nan"), **logged)  # queued to qlib's thread, as records do
            md = CasRepoRecord(rec, model, dataset, store=str(tmp_path / "cas"), tags={"n": 3}).generate()
            rec.save_objects(**{"params.pkl": model})  # as qrun does, for the import below
            with pytest.raises(InvalidAliasError):
                CasRepoRecord(rec, model, dataset, store=str(tmp_path / "cas"), alias="Prod")
            (tmp_path / "not_a_folder").write_text("")
            with pytest.raises(StoreError):
                CasRepoRecord(rec, model, dataset, store=str(tmp_path / "not_a_folder"), model_id="lost",
                              experiment_name="elsewhere").generate()
        tags = R.get_recorder(recorder_id=rec.id, experiment_name="port").list_tags()
    assert md.metrics == logged  # the NaN ICIR is dropped, the risk figures kept by name
    assert (md.model_id, md.version, md.experiment_name) == ("port.LGBModel", 1, "port")
    assert md.hyperparameters == hyperparameters_of(model) and md.tags == {"n": "3"}
    assert "task" not in md.lineage and md.lineage["dataset"]["features"]["count"] == 20
    assert md.lineage["recorder"]["artifact"] is None  # the run held no params.pkl yet
    assert tags["cas_repo.ref"] == "port.LGBModel@1"
    assert tags["cas_repo.error"].startswith("StoreError: cannot create the store folder")
    assert tags["cas_repo.model_id"] == "lost"  # named before the save: an import adopts it so
    with ModelStore(tmp_path / "adopted") as adopted:
        report = import_mlruns(adopted, tmp_path / "q" / "mlruns")
        assert report.created == ("lost@1",) and report.ok
    with ModelStore(tmp_path / "cas") as store:
        np.testing.assert_array_equal(syn.predict(store.load_model("port.LGBModel")[0], dataset),
                                      syn.predict(model, dataset))
