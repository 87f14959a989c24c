"""Real Qlib models on synthetic data, offline, in well under two seconds each.

qlib, lightgbm and torch are imported inside the functions: `import
qlib.contrib.model.gbdt` alone costs ~1.8 s, never to be paid by `import cas_repo`.
"""

import contextlib
import copy
import importlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

# Few enough to be "a few", enough that LightGBM's validation loss keeps falling past
# 100 rounds at learning_rate=0.05, so a 100-round fit really keeps 100 trees.
_N_INFORMATIVE = 10
# LightGBM prefers these params over the num_boost_round argument: one left in a
# parent's params would silently override `extra_rounds` in continue_training.
_ROUND_ALIASES = {"num_iterations", "num_iteration", "n_iter", "num_tree", "num_trees",
                  "num_round", "num_rounds", "nrounds", "num_boost_round", "n_estimators",
                  "max_iter", "early_stopping_round", "early_stopping_rounds", "early_stopping"}

Span = tuple[pd.Timestamp, pd.Timestamp]


class TorchUnavailableError(ImportError):
    """Raised by the PyTorch trainers when torch cannot be imported."""


class Segments(NamedTuple):
    """Inclusive (first, last) date spans; use as `make_dataset(frame, **seg._asdict())`."""

    train: Span
    valid: Span
    test: Span


def make_frame(n_instruments: int = 50, n_days: int = 300, n_features: int = 20,
               seed: int = 0, start: str = "2020-01-01", signal: float = 0.3) -> pd.DataFrame:
    """Make a Qlib-shaped frame of float32 features and a learnable label.

    Index is `(datetime, instrument)` over `n_days` business days; columns are
    `("feature", "F0".."F{n-1}")` and `("label", "LABEL0")`. The label is
    `signal * X[:, :k] @ w + N(0, 1)` with k = min(10, n_features) and |w| in [0.5, 1.5]:
    at the defaults the linear part explains about half the label's variance.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n_days, name="datetime")
    instruments = pd.Index([f"SH{600000 + i}" for i in range(n_instruments)], name="instrument")
    index = pd.MultiIndex.from_product([dates, instruments])
    k = min(_N_INFORMATIVE, n_features)
    # One float32 block: the frame keeps one dtype and DataFrame() does not copy per column.
    values = np.empty((len(index), n_features + 1), dtype=np.float32)
    values[:, :n_features] = rng.standard_normal((len(index), n_features), dtype=np.float32)
    weights = rng.uniform(0.5, 1.5, k) * np.where(np.arange(k) % 2 == 0, 1.0, -1.0)
    values[:, n_features] = signal * (values[:, :k] @ weights) + rng.standard_normal(len(index))
    columns = pd.MultiIndex.from_tuples(
        [("feature", f"F{i}") for i in range(n_features)] + [("label", "LABEL0")])
    return pd.DataFrame(values, index=index, columns=columns)


def _dates(frame: pd.DataFrame) -> pd.Index:
    return frame.index.get_level_values("datetime").unique().sort_values()


def default_segments(frame: pd.DataFrame, fractions=(0.6, 0.2, 0.2)) -> Segments:
    """Split the frame's dates into consecutive train/valid/test spans by `fractions`."""
    dates = _dates(frame)
    cuts = np.cumsum(np.asarray(fractions, dtype=float) / sum(fractions)) * len(dates)
    a, b = round(cuts[0]), round(cuts[1])
    if not 0 < a < b < len(dates):
        raise ValueError(f"{len(dates)} dates are too few for fractions {fractions}")
    return Segments((dates[0], dates[a - 1]), (dates[a], dates[b - 1]), (dates[b], dates[-1]))


def rolling_segments(frame: pd.DataFrame, n_windows: int, *, train_days: int | None = None,
                     valid_days: int | None = None, test_days: int | None = None,
                     step_days: int | None = None) -> list[Segments]:
    """Successive (train, valid, test) windows, each `step_days` later than the last.

    Defaults: u = n_dates // (n_windows + 4); train 3u, valid u, test u and step u days,
    so the test spans tile the end of the frame as in a rolling retrain.
    """
    dates = _dates(frame)
    u = len(dates) // (n_windows + 4)
    n_train, n_valid, n_test = train_days or 3 * u, valid_days or u, test_days or u
    step = step_days or n_test
    span = n_train + n_valid + n_test
    if min(n_train, n_valid, n_test, step) < 1 or (n_windows - 1) * step + span > len(dates):
        raise ValueError(f"{n_windows} windows of {span} days do not fit in {len(dates)} dates")
    starts = [(s, s + n_train, s + n_train + n_valid) for s in range(0, n_windows * step, step)]
    return [Segments((dates[s], dates[t - 1]), (dates[t], dates[v - 1]),
                     (dates[v], dates[s + span - 1])) for s, t, v in starts]


def make_dataset(frame: pd.DataFrame | None = None, *, train: Span | None = None,
                 valid: Span | None = None, test: Span | None = None, **frame_kwargs):
    """Wrap a frame as StaticDataLoader -> DataHandlerLP -> DatasetH (no qlib.init needed).

    With none of train/valid/test given, the 60/20/20 `default_segments` are used;
    otherwise exactly the given segments are set (so `valid=None` omits validation).
    `frame_kwargs` go to `make_frame` when `frame` is None.
    """
    from qlib.data.dataset import DatasetH
    from qlib.data.dataset.handler import DataHandlerLP
    from qlib.data.dataset.loader import StaticDataLoader

    if frame is None:
        frame = make_frame(**frame_kwargs)
    elif frame_kwargs:
        raise TypeError(f"frame given, so {sorted(frame_kwargs)} would be ignored")
    segments = {k: v for k, v in {"train": train, "valid": valid, "test": test}.items() if v}
    segments = segments or default_segments(frame)._asdict()
    return DatasetH(DataHandlerLP(data_loader=StaticDataLoader(config=frame)), segments=segments)


class _NullRecorder:
    """Stands in for qlib's `R` during fit: keeps logged metrics in memory, nothing else."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, Any]]] = []

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        self.metrics.append((step, kwargs))


@contextlib.contextmanager
def quiet_recorder(*modules: str) -> Iterator[_NullRecorder]:
    """Temporarily replace the module-level `R` of qlib model modules with a stand-in.

    Args:
        modules: dotted module names; default `qlib.contrib.model.gbdt`.
    Yields the stand-in; its `.metrics` holds `(step, {name: value})` pairs. Patching a
    module global is not thread-safe: do not fit models concurrently in threads.
    """
    stand_in = _NullRecorder()
    with contextlib.ExitStack() as undo:
        for name in modules or ("qlib.contrib.model.gbdt",):
            # The module's globals: its functions look `R` up there on every call.
            namespace = vars(importlib.import_module(name))
            undo.callback(namespace.__setitem__, "R", namespace["R"])
            namespace["R"] = stand_in
        yield stand_in


def train_lgbm(dataset, *, num_boost_round: int = 100, seed: int = 42,
               learning_rate: float = 0.05, num_leaves: int = 31,
               early_stopping_rounds: int | None = None, use_recorder: bool = False,
               verbose: bool = False, **params: Any):
    """Fit a `qlib.contrib.model.gbdt.LGBModel` single-threaded and deterministically.

    `early_stopping_rounds=None` never stops early, but LightGBM still keeps only the trees
    up to the best validation iteration (100 of 100 on a default frame, 155 of 500); a
    dataset without "valid" keeps all. With `use_recorder=True` metrics go to the real `R`
    (be inside `offline_qlib` and `R.start`). Extra `params` (and `loss`) go to LGBModel.
    """
    from qlib.contrib.model.gbdt import LGBModel

    lgb_params = {"seed": seed, "learning_rate": learning_rate, "num_leaves": num_leaves,
                  "num_threads": 1, "deterministic": True, "force_col_wise": True, "verbosity": -1}
    lgb_params.update(params)
    model = LGBModel(loss=lgb_params.pop("loss", "mse"), num_boost_round=num_boost_round,
                     early_stopping_rounds=early_stopping_rounds or num_boost_round, **lgb_params)
    recorder = contextlib.nullcontext() if use_recorder else quiet_recorder()
    # LightGBM's early-stopping callback print()s two lines per fit, with no switch
    # reachable through LGBModel.fit.
    silence = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with recorder, silence:
        model.fit(dataset, verbose_eval=0)
    return model


def continue_training(model, dataset, extra_rounds: int = 10):
    """Return a copy of `model` with `extra_rounds` trees appended; `model` is untouched.

    Stands in for `LGBModel.finetune`, which is broken in qlib 0.9.7. Trains on the
    dataset's train segment without validation, so every extra tree is kept.
    """
    import lightgbm as lgb
    from qlib.data.dataset.handler import DataHandlerLP

    if model.model is None:
        raise ValueError("model is not fitted yet")
    df = dataset.prepare("train", col_set=["feature", "label"], data_key=DataHandlerLP.DK_L)
    train_set = lgb.Dataset(df["feature"].values, label=np.squeeze(df["label"].values))
    params = {k: v for k, v in model.params.items() if k not in _ROUND_ALIASES}
    booster = lgb.train(params, train_set, num_boost_round=extra_rounds, init_model=model.model)
    child = copy.copy(model)
    child.params = dict(model.params)
    child.model = booster
    return child


def predict(model, dataset, segment: str = "test") -> np.ndarray:
    """Predict one segment with any Qlib model; returns a flat float64 array."""
    return np.asarray(model.predict(dataset, segment=segment), dtype=np.float64).reshape(-1)


def _require_torch(what: str) -> None:
    try:
        import torch  # noqa: F401 - only whether it imports
    except ImportError as exc:
        raise TorchUnavailableError(
            f"{what} needs PyTorch, which is not installed: "
            "pip install 'cas-repo[torch]' (pins torch==2.13.0, a CPU wheel)") from exc


def train_dnn(dataset, *, max_steps: int = 40, seed: int = 42, lr: float = 1e-3,
              batch_size: int = 512, layers: tuple[int, ...] = (32,), **kwargs: Any):
    """Fit a small `DNNModelPytorch` on CPU (~0.4 s warm); extra kwargs go to it.

    Its pickles differ across processes although the weights are equal. Seeding calls
    `np.random.seed` and `torch.manual_seed`, so global RNG state changes.
    """
    _require_torch("train_dnn")
    from qlib.contrib.model.pytorch_nn import DNNModelPytorch

    n_features = dataset.prepare("train", col_set="feature").shape[1]
    # scheduler=None: qlib's default ReduceLROnPlateau call breaks on torch 2.13.
    config = {"lr": lr, "max_steps": max_steps, "batch_size": batch_size, "eval_steps": 10,
              "optimizer": "adam", "GPU": -1, "seed": seed, "scheduler": None,
              "pt_model_kwargs": {"input_dim": n_features, "layers": tuple(layers)}}
    model = DNNModelPytorch(**config | kwargs)
    # An explicit save_path: without one, every fit leaks a temp file under ~/tmp.
    with (tempfile.TemporaryDirectory() as tmp, quiet_recorder("qlib.contrib.model.pytorch_nn"),
          warnings.catch_warnings()):
        # qlib hands torch read-only pandas buffers, which torch only reads here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        model.fit(dataset, verbose=False, save_path=os.path.join(tmp, "best.pt"))
    return model


def train_lstm(dataset, *, n_epochs: int = 2, seed: int = 42, d_feat: int | None = None,
               hidden_size: int = 16, num_layers: int = 1, batch_size: int = 800,
               lr: float = 1e-3, **kwargs: Any):
    """Fit a small qlib `LSTM` on CPU; needs train, valid and test segments.

    `d_feat` is features per time step (F columns read as d_feat x T); default: all, T=1.
    """
    _require_torch("train_lstm")
    from qlib.contrib.model.pytorch_lstm import LSTM

    n_train, n_features = dataset.prepare("train", col_set="feature").shape
    n_valid = len(dataset.prepare("valid", col_set="feature"))
    # LSTM.fit skips the last partial batch; if no full batch fits the valid segment it
    # never records a best epoch and dies with UnboundLocalError.
    config = {"d_feat": d_feat or n_features, "hidden_size": hidden_size, "num_layers": num_layers,
              "n_epochs": n_epochs, "lr": lr, "batch_size": max(1, min(batch_size, n_train, n_valid)),
              "GPU": -1, "seed": seed}
    model = LSTM(**config | kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        model.fit(dataset, save_path=os.path.join(tmp, "best.pt"))
    return model


@contextlib.contextmanager
def offline_qlib(tmp_dir: str | os.PathLike, *, log_code: bool = False, **init_kwargs: Any):
    """Run a real `qlib.init` offline with its MLflow store under `tmp_dir`; yields `R`.

    Uses an empty `tmp_dir/qlib_data` as provider_uri, region "cn" and an MLflowExpManager
    at `file:<tmp_dir>/mlruns`. Inside, the cwd is `tmp_dir` (qlib drops `./tmp/.../mlruns/
    filelock` under the cwd per experiment) and MLFLOW_ALLOW_FILE_STORE=true (else mlflow
    3.17 refuses file stores). Unless `log_code`, `R.start` skips qlib's git diff/status
    of the cwd, which outside a repo dumps git's usage text on stderr.

    Undone on exit: cwd, os.environ (back to its state on entry), the git patch and
    `sys.excepthook`; an experiment left active (a fit outside `R.start`) is ended. NOT
    undone (qlib has no de-init): `qlib.config.C`, the data providers, `R` pointing at
    `tmp_dir/mlruns`, mlflow's tracking URI, qlib's log level, an `atexit` hook. Entering
    again, with any directory, re-initialises cleanly.
    """
    from unittest import mock

    import qlib
    from qlib.workflow import R
    from qlib.workflow.recorder import MLflowRecorder

    tmp = Path(tmp_dir).resolve()
    (tmp / "qlib_data").mkdir(parents=True, exist_ok=True)
    exp_manager = {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                   "kwargs": {"uri": f"file:{tmp / 'mlruns'}", "default_exp_name": "Experiment"}}
    with contextlib.ExitStack() as undo:
        undo.enter_context(mock.patch.dict(os.environ, {"MLFLOW_ALLOW_FILE_STORE": "true"}))
        undo.enter_context(contextlib.chdir(tmp))
        # Patching with the current value makes the exit restore it after qlib replaced it.
        undo.enter_context(mock.patch.object(sys, "excepthook", sys.excepthook))
        if not log_code:
            undo.enter_context(mock.patch.object(
                MLflowRecorder, "_log_uncommitted_code", lambda self: None))
        qlib.init(**{"provider_uri": str(tmp / "qlib_data"), "region": "cn",
                     "exp_manager": exp_manager, **init_kwargs})
        undo.callback(R.end_exp)
        yield R


def rolling_task(frame: pd.DataFrame, directory: str | os.PathLike, *, train_days: int, valid_days: int,
                 test_days: int, num_boost_round: int = 30, seed: int = 1) -> dict[str, Any]:
    """A Qlib task (LGBModel on ``frame``) for ``RollingGen`` / ``OnlineManager``, offline.

    Writes ``frame`` to ``directory/frame.pkl`` (the task's ``StaticDataLoader`` reads it,
    so the task stays JSON) and the frame's dates as ``directory/qlib_data/calendars/day.txt``,
    the trading calendar ``RollingGen`` and ``OnlineManager`` read through ``D.calendar``
    (use ``offline_qlib(directory)``). The first windows are laid end to end from day 0.
    """
    root = Path(directory)
    (root / "qlib_data" / "calendars").mkdir(parents=True, exist_ok=True)
    dates = _dates(frame)
    (root / "qlib_data" / "calendars" / "day.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in dates))
    frame.to_pickle(root / "frame.pkl")

    def day(i: int) -> str:
        return f"{dates[i]:%Y-%m-%d}"

    a, b = train_days, train_days + valid_days
    return {
        "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                  "kwargs": {"loss": "mse", "num_boost_round": num_boost_round, "num_leaves": 15,
                             "learning_rate": 0.1, "seed": seed, "num_threads": 1, "deterministic": True,
                             "force_col_wise": True, "verbose": -1}},
        "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
            "handler": {"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
                "data_loader": {"class": "StaticDataLoader", "module_path": "qlib.data.dataset.loader",
                                "kwargs": {"config": str(root / "frame.pkl")}}}},
            "segments": {"train": (day(0), day(a - 1)), "valid": (day(a), day(b - 1)),
                         "test": (day(b), day(b + test_days - 1))}}},
    }
