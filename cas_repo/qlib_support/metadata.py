"""ModelMetadata for a trained Qlib model: type, hyperparameters, IC metrics, lineage.

``metadata_for(model, dataset, model_id=..., experiment_name=...)`` fills in what can
be read from the model and the dataset, so a save records the same facts every time.
``task_hyperparameters`` / ``task_lineage`` / ``task_model_id`` map a Qlib task (what
qrun and the trainers save in a run as ``task``) the same way for every caller: the
qrun record, ``import-mlruns`` and online serving.
qlib is imported only by :func:`signal_metrics`, which needs its IC helpers.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from ..metadata import ModelMetadata
from .lineage import _plain, lineage_for

# Qlib model classes by the seed's model_type names; others keep their class name.
MODEL_TYPES = {
    "LGBModel": "LGBM", "HFLGBModel": "LGBM", "XGBModel": "XGB", "CatBoostModel": "CatBoost",
    "LinearModel": "Linear", "DEnsembleModel": "DoubleEnsemble", "DNNModelPytorch": "MLP",
    "LSTM": "LSTM", "GRU": "GRU", "ALSTM": "ALSTM",
}
# Attributes of qlib's PyTorch models that are state, not settings.
_NOT_SETTINGS = {"fitted", "best_step", "device", "use_gpu", "logger"}
_NOT_ID = re.compile(r"[^A-Za-z0-9._-]+")


def model_type_of(model: Any) -> str:
    """The seed's short type name ("LGBM", "MLP", "LSTM", …) or the class name."""
    name = type(model).__name__
    return MODEL_TYPES.get(name, name)


def hyperparameters_of(model: Any) -> dict[str, Any]:
    """The settings of a Qlib model: LightGBM ``params`` plus its public scalar attributes."""
    out: dict[str, Any] = {}
    params = getattr(model, "params", None)
    if isinstance(params, dict):
        out.update({str(k): _plain(v) for k, v in params.items()})
    for key, value in vars(model).items() if hasattr(model, "__dict__") else ():
        if key.startswith("_") or key in _NOT_SETTINGS or key == "params":
            continue
        small = isinstance(value, (list, tuple, dict)) and len(value) <= 64
        if value is None or isinstance(value, (bool, int, float, str)) or small:
            out[key] = _plain(value)
    return out


def task_hyperparameters(task: Any) -> dict[str, Any]:
    """The model kwargs of a Qlib task, typed as the task holds them ({} without any).

    A run's MLflow params flatten the same task to dotted keys with text values
    (``model.kwargs.num_leaves = "31"``); the task object keeps ``31`` an int.
    """
    model = task.get("model") if isinstance(task, dict) else None
    kwargs = model.get("kwargs") if isinstance(model, dict) else None
    return _plain(dict(kwargs)) if isinstance(kwargs, dict) else {}


def task_lineage(task: dict[str, Any]) -> dict[str, Any]:
    """The task as JSON (dates as ISO text), without its ``record`` list.

    qrun fills the records' ``<MODEL>`` / ``<DATASET>`` placeholders in place, so the
    record list may hold the live model and dataset: they are recorded elsewhere.
    """
    return _plain({k: v for k, v in task.items() if k != "record"})


def task_model_id(experiment_name: str, task: Any) -> str | None:
    """``<experiment>.<model class>`` (``workflow.LGBModel``), or None if the task names no class."""
    model = task.get("model") if isinstance(task, dict) else None
    cls = model.get("class") if isinstance(model, dict) else None
    if not isinstance(cls, str) or not cls:
        return None
    return _NOT_ID.sub("_", f"{experiment_name}.{cls}").lstrip("._-")[:128] or None


def signal_metrics(model: Any, dataset: Any, segment: str = "test") -> dict[str, float]:
    """IC, ICIR, Rank IC and Rank ICIR of the model's predictions on ``segment``."""
    from qlib.contrib.eva.alpha import calc_ic

    pred = model.predict(dataset, segment=segment)
    label = dataset.prepare(segment, col_set="label")
    label = label.iloc[:, 0] if getattr(label, "ndim", 1) == 2 else label
    ic, ric = calc_ic(pred, label.reindex(pred.index))
    out = {}
    for name, series in (("IC", ic), ("Rank IC", ric)):
        mean, std = float(series.mean()), float(series.std())
        out[name] = mean
        out[name + "IR"] = mean / std if std else 0.0
    return {k: v for k, v in out.items() if math.isfinite(v)}


def metadata_for(model: Any, dataset: Any = None, *, model_id: str, experiment_name: str,
                 metrics: dict[str, float] | None = None, model_type: str | None = None,
                 hyperparameters: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                 parents: list[str] | None = None, created_at: datetime | None = None,
                 segment: str = "test") -> ModelMetadata:
    """Metadata for ``model``, with lineage (and, if none are given, IC metrics) from ``dataset``.

    Explicit arguments win over what is inferred. ``parents`` records continued training
    or fine-tuning (``["lgbm_csi300@3"]``).
    """
    if metrics is None:
        metrics = signal_metrics(model, dataset, segment) if dataset is not None else {}
    return ModelMetadata(
        model_id=model_id,
        experiment_name=experiment_name,
        model_type=model_type or model_type_of(model),
        hyperparameters=hyperparameters if hyperparameters is not None else hyperparameters_of(model),
        metrics=metrics,
        created_at=created_at or datetime.now(UTC),
        tags=dict(tags or {}),
        parents=list(parents or []),
        lineage=lineage_for(dataset) if dataset is not None else {},
    )
