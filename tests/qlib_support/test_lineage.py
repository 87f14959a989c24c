"""Lineage from Qlib datasets, metadata_for, and what importing the package loads."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cas_repo.qlib_support import synthetic as syn
from cas_repo.qlib_support.lineage import dataset_lineage, digest_of, environment
from cas_repo.qlib_support.metadata import metadata_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frame():
    return syn.make_frame(n_instruments=20, n_days=100)


@pytest.fixture(scope="module")
def dataset(frame):
    return syn.make_dataset(frame)


@pytest.fixture(scope="module")
def model(dataset):
    return syn.train_lgbm(dataset, num_boost_round=20)


def test_static_dataset_lineage(frame, dataset):
    lin = dataset_lineage(dataset)
    seg = syn.default_segments(frame)
    assert lin["class"] == "qlib.data.dataset.DatasetH"
    assert lin["handler"]["class"] == "qlib.data.dataset.handler.DataHandlerLP"
    assert lin["handler"]["config"]["data_loader"]["class"] == "qlib.data.dataset.loader.StaticDataLoader"
    assert lin["handler"]["config"]["data_loader"]["config"] == {"class": "pandas.DataFrame",
                                                                  "shape": [2000, 21]}
    assert lin["segments"] == {k: [str(a.date()), str(b.date())] for k, (a, b) in seg._asdict().items()}
    assert lin["label"] == {"columns": ["LABEL0"], "expressions": None}
    assert lin["features"]["count"] == 20
    assert lin["features"]["blake3"] == digest_of([f"F{i}" for i in range(20)])
    assert lin["instruments"] is None


def test_feature_digest_follows_the_columns_not_the_data(frame, dataset):
    other_data = syn.make_dataset(syn.make_frame(n_instruments=20, n_days=100, seed=7))
    fewer = syn.make_dataset(syn.make_frame(n_instruments=20, n_days=100, n_features=19))
    digest = dataset_lineage(dataset)["features"]["blake3"]
    assert dataset_lineage(other_data)["features"]["blake3"] == digest
    assert dataset_lineage(fewer)["features"]["blake3"] != digest


def test_expression_handler_records_label_expression_and_processors():
    from qlib.contrib.data.handler import Alpha158
    from qlib.data.dataset import DatasetH

    handler = Alpha158(instruments="csi300", start_time="2010-01-01", end_time="2020-12-31",
                       fit_start_time="2010-01-01", fit_end_time="2016-12-31", init_data=False)
    ds = DatasetH(handler, segments={"train": ("2010-01-01", "2016-12-31"),
                                     "test": ("2019-01-01", "2020-12-31")})
    lin = dataset_lineage(ds)
    assert lin["handler"]["class"] == "qlib.contrib.data.handler.Alpha158"
    assert lin["instruments"] == "csi300"
    assert lin["label"]["expressions"] == ["Ref($close, -2)/Ref($close, -1) - 1"]
    assert lin["features"]["count"] == 158 and lin["features"]["expressions_blake3"]
    procs = [p["class"].rsplit(".", 1)[1] for p in lin["handler"]["config"]["learn_processors"]]
    assert procs == ["DropnaLabel", "CSZScoreNorm"]
    assert lin["segments"]["test"] == ["2019-01-01", "2020-12-31"]


def test_not_a_dataset_is_rejected():
    with pytest.raises(TypeError, match="DatasetH"):
        dataset_lineage(object())


def test_environment_versions():
    env = environment()
    assert env["python"] == platform.python_version()
    assert env["qlib"] == importlib.metadata.version("pyqlib")
    for key in ("lightgbm", "numpy", "pandas", "torch"):
        assert key in env


def test_save_with_dataset_records_queryable_lineage(store, make_md, dataset, model):
    md = make_md("lgbm", hyperparameters={})
    md.lineage = {"note": "kept"}
    store.save_model(model, md, dataset=dataset)
    got = store.get_model_metadata("lgbm")
    assert got.lineage["dataset"] == dataset_lineage(dataset)
    assert got.lineage["environment"]["qlib"] == environment()["qlib"]
    assert got.lineage["note"] == "kept"
    with store.catalog.session() as s:
        rows = s.con.execute(
            "SELECT model_id, lineage->>'$.dataset.features.blake3', lineage->>'$.dataset.segments.test[1]' "
            "FROM versions").fetchall()
    seg = dataset_lineage(dataset)["segments"]["test"][1]
    assert rows == [("lgbm", digest_of([f"F{i}" for i in range(20)]), seg)]


def test_metadata_for_fills_type_params_metrics_and_parents(store, dataset, model):
    md = metadata_for(model, dataset, model_id="lgbm", experiment_name="exp")
    assert md.model_type == "LGBM"
    assert md.hyperparameters["learning_rate"] == 0.05 and md.hyperparameters["num_boost_round"] == 20
    assert set(md.metrics) == {"IC", "ICIR", "Rank IC", "Rank ICIR"} and md.metrics["IC"] > 0.2
    assert md.lineage["dataset"]["features"]["count"] == 20
    store.save_model(model, md)
    child = syn.continue_training(model, dataset, 5)
    cmd = metadata_for(child, dataset, model_id="lgbm_ft", experiment_name="exp", parents=["lgbm@1"],
                       metrics={"IC": 0.1})
    store.save_model(child, cmd)
    assert store.get_model_metadata("lgbm_ft").parents == ["lgbm@1"]
    assert store.get_model_metadata("lgbm_ft").metrics == {"IC": 0.1}


def test_importing_the_package_loads_no_qlib_mlflow_or_torch(tmp_path):
    code = ("import sys, cas_repo, cas_repo.cli, cas_repo.qlib_support.lineage, "
            "cas_repo.qlib_support.recorder, cas_repo.qlib_support.mlruns_import; "
            "print(sorted({'qlib', 'mlflow', 'torch', 'lightgbm'} & set(sys.modules)))")
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("[]")
