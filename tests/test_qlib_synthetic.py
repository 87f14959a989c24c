"""Tests for cas_repo.qlib_support.synthetic: real Qlib models on synthetic data."""

import hashlib
import itertools
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cas_repo.qlib_support import synthetic as syn
from cas_repo.qlib_support.recorder import wait_for_logging

PROJECT_ROOT = Path(syn.__file__).resolve().parents[2]

# Runs in a fresh interpreter; prints one line of pickle digests last.
_CHILD = """
import hashlib, pickle
from cas_repo.qlib_support.synthetic import continue_training, make_dataset, train_lgbm
ds = make_dataset()
parent = train_lgbm(ds)
child = continue_training(parent, ds, 10)
print("DIGESTS", *(hashlib.sha256(pickle.dumps(m)).hexdigest() for m in (parent, child)))
"""


def _fresh_python(code: str, cwd: Path) -> subprocess.Popen:
    # PYTHONPATH so the child imports this checkout even without an editable install.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def dataset():
    return syn.make_dataset()


@pytest.fixture(scope="module")
def parent(dataset):
    return syn.train_lgbm(dataset)


def test_frame_shape_index_and_columns():
    frame = syn.make_frame(n_instruments=7, n_days=11, n_features=5, seed=3)
    assert frame.shape == (7 * 11, 6)
    assert frame.index.names == ["datetime", "instrument"]
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert isinstance(frame.index.levels[0], pd.DatetimeIndex)
    assert list(frame.columns) == [("feature", f"F{i}") for i in range(5)] + [("label", "LABEL0")]
    assert (frame.dtypes == np.float32).all()
    pd.testing.assert_frame_equal(frame, syn.make_frame(7, 11, 5, seed=3))
    assert not frame.equals(syn.make_frame(7, 11, 5, seed=4))


def test_default_frame_label_is_learnable():
    frame = syn.make_frame()
    assert frame.shape == (50 * 300, 21)
    x, y = frame["feature"].to_numpy(np.float64), frame["label"].to_numpy(np.float64).ravel()
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    r2 = 1 - np.var(y - np.c_[x, np.ones(len(x))] @ coef) / np.var(y)
    assert 0.3 < r2 < 0.7


def test_segments_partition_the_dates():
    frame = syn.make_frame(n_instruments=3, n_days=100)
    dates = frame.index.get_level_values("datetime").unique()
    seg = syn.default_segments(frame)
    assert seg.train[0] == dates[0] and seg.test[1] == dates[-1]
    assert seg.train[1] < seg.valid[0] <= seg.valid[1] < seg.test[0]
    windows = syn.rolling_segments(frame, 3)
    assert len(windows) == 3
    for a, b in itertools.pairwise(windows):
        assert a.train[0] < b.train[0] and a.test[1] < b.test[1]
        assert a.test[1] < b.test[0]  # default step = test length: test spans tile
    for w in windows:
        assert w.train[1] < w.valid[0] <= w.valid[1] < w.test[0] <= w.test[1]
    ds = syn.make_dataset(frame, **windows[1]._asdict())
    test_x = ds.prepare("test", col_set="feature")
    assert set(test_x.index.get_level_values("datetime")) == {
        d for d in dates if windows[1].test[0] <= d <= windows[1].test[1]}
    with pytest.raises(ValueError):
        syn.rolling_segments(frame, 200)


def test_module_import_does_not_load_qlib(tmp_path):
    code = ("import sys, cas_repo.qlib_support.synthetic; "
            "print(sorted({'qlib', 'lightgbm', 'torch'} & set(sys.modules)))")
    assert _finish(_fresh_python(code, tmp_path)).strip().endswith("[]")


def test_trained_model_predicts_finite_values(dataset, parent):
    assert parent.model.num_trees() == 100  # best iteration is the last one on this frame
    pred = syn.predict(parent, dataset)
    label = dataset.prepare("test", col_set="label").to_numpy().ravel()
    assert pred.shape == label.shape and np.isfinite(pred).all()
    assert np.corrcoef(pred, label)[0, 1] > 0.4


def test_continue_training_appends_trees_without_mutating(dataset, parent):
    before = pickle.dumps(parent)
    child = syn.continue_training(parent, dataset, extra_rounds=10)
    assert child is not parent and child.model is not parent.model
    assert child.model.num_trees() == parent.model.num_trees() + 10
    assert pickle.dumps(parent) == before
    assert not np.array_equal(syn.predict(child, dataset), syn.predict(parent, dataset))
    # The parent's tree text reappears verbatim in the child: what chunked storage dedups.
    trees = before[before.index(b"Tree=0"):before.index(b"end of trees")]
    assert len(trees) > 0.9 * len(before) and trees in pickle.dumps(child)


@pytest.mark.slow
def test_pickles_identical_across_processes(tmp_path, dataset, parent):
    procs = [_fresh_python(_CHILD, tmp_path) for _ in range(2)]
    lines = [_finish(p).strip().splitlines()[-1].split() for p in procs]
    assert lines[0][0] == "DIGESTS" and lines[0] == lines[1]
    child = syn.continue_training(parent, dataset, 10)
    here = [hashlib.sha256(pickle.dumps(m)).hexdigest() for m in (parent, child)]
    assert lines[0][1:] == here


def test_quiet_recorder_swaps_and_restores_R(dataset):
    import qlib.contrib.model.gbdt as gbdt

    original = gbdt.R
    with syn.quiet_recorder() as rec:
        assert gbdt.R is rec
        gbdt.R.log_metrics(step=0, loss=1.0)
    assert gbdt.R is original and rec.metrics == [(0, {"loss": 1.0})]
    with pytest.raises(RuntimeError), syn.quiet_recorder():
        raise RuntimeError
    assert gbdt.R is original


def test_offline_qlib_real_recorder(tmp_path, dataset):
    cwd, env = os.getcwd(), os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    with syn.offline_qlib(tmp_path) as R:
        assert Path.cwd() == tmp_path.resolve()
        with R.start(experiment_name="synthetic"):
            model = syn.train_lgbm(dataset, num_boost_round=10, use_recorder=True)
            recorder = R.get_recorder()
            wait_for_logging(recorder)  # fit's per-round metrics are written by a thread
            R.save_objects(**{"model.pkl": model})
        assert recorder.load_object("model.pkl").model.num_trees() == 10
    assert os.getcwd() == cwd and os.environ.get("MLFLOW_ALLOW_FILE_STORE") == env
    assert (tmp_path / "mlruns").is_dir()
    assert list(tmp_path.glob("tmp/**/filelock"))  # qlib's stray lock landed in tmp_path


def test_torch_models_train_and_predict(dataset):
    pytest.importorskip("torch")
    for train in (syn.train_dnn, syn.train_lstm):
        pred = syn.predict(train(dataset), dataset)
        assert pred.shape == (len(dataset.prepare("test", col_set="feature")),)
        assert np.isfinite(pred).all()


def test_torch_missing_raises_import_error(dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    for train in (syn.train_dnn, syn.train_lstm):
        with pytest.raises(ImportError, match="needs PyTorch"):
            train(dataset)
    assert issubclass(syn.TorchUnavailableError, ImportError)
