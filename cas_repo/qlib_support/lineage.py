"""Where a model came from: its Qlib dataset and the library versions, as plain JSON.

:func:`dataset_lineage` reads a ``DatasetH`` (or ``TSDatasetH``) without fetching data:
the handler's class and configuration, instruments, segments, the label's columns and
expressions, and a BLAKE3 digest of the feature column list (two models trained on
the same features share it). :func:`environment` records the versions of Python and of
the libraries a pickle depends on. Both are stored in ``ModelMetadata.lineage`` (the
catalog's ``versions.lineage`` JSON column), so they can be queried.

Nothing here imports qlib: the dataset is only inspected.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
from typing import Any

from ..digest import hash_bytes
from ..metadata import ModelMetadata

LINEAGE_FORMAT = 1
# Distributions whose version decides whether a stored pickle loads and predicts the same.
_DISTRIBUTIONS = {"qlib": "pyqlib", "lightgbm": "lightgbm", "numpy": "numpy", "pandas": "pandas",
                  "torch": "torch", "cas_repo": "cas-repo"}
# Longer lists are stored as a count and a digest: lineage stays small and queryable.
_MAX_LIST = 64
_MAX_DEPTH = 8


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def digest_of(values: Any) -> str:
    """BLAKE3 (hex) of the canonical JSON of ``values``."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hash_bytes(text.encode("utf-8")).hex


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON: dates as ISO text, frames as their shape, objects as their class."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if depth > _MAX_DEPTH:
        return f"<{type(value).__name__}>"
    if isinstance(value, _dt.date):
        return _date_text(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item(), depth + 1)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}"
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_LIST:
            return {"count": len(value), "blake3": digest_of([_plain(v, depth + 1) for v in value])}
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, slice):
        return [_plain(value.start, depth + 1), _plain(value.stop, depth + 1)]
    shape = getattr(value, "shape", None)
    if shape is not None:  # a DataFrame or array given as configuration: record its shape only
        return {"class": _qualname(value), "shape": [int(n) for n in shape]}
    return {"class": _qualname(value)}


def _date_text(value: _dt.date) -> str:
    if isinstance(value, _dt.datetime) and value.time() == _dt.time(0) and value.tzinfo is None:
        return value.date().isoformat()
    return value.isoformat()


def _public_settings(obj: Any) -> dict[str, Any]:
    """The public, small attributes of a loader or processor (fitted arrays are skipped)."""
    out = {}
    for key, value in vars(obj).items():
        if key.startswith("_") or getattr(value, "shape", None) is not None:
            continue
        out[key] = _plain(value, 1)
    return out


def _processor(proc: Any) -> dict[str, Any]:
    if isinstance(proc, dict):  # an unbuilt {"class": ..., "kwargs": ...} config
        return _plain(proc)
    return {"class": _qualname(proc), "kwargs": _public_settings(proc)}


def _loader(loader: Any) -> dict[str, Any] | None:
    if loader is None:
        return None
    out: dict[str, Any] = {"class": _qualname(loader)}
    for key, value in vars(loader).items():
        if key in ("_data", "fields"):  # the data itself; fields are recorded under label/features
            continue
        out[key.lstrip("_")] = _plain(value, 1)
    return out


def _fields(loader: Any, group: str, part: int = 0) -> list[str] | None:
    """The expressions (part 0) or names (part 1) a QlibDataLoader gives ``group``.

    None for loaders without expressions, such as a StaticDataLoader over a frame.
    """
    fields = getattr(loader, "fields", None)
    if isinstance(fields, dict) and isinstance(fields.get(group), (tuple, list)) and len(fields[group]) == 2:
        return [str(e) for e in fields[group][part]]
    return None


def _columns(handler: Any, group: str) -> list[str] | None:
    """The handler's column names in ``group``; from its loader's config before data is loaded."""
    try:
        return [str(c) for c in handler.get_cols(group)]
    except Exception:
        return _fields(getattr(handler, "data_loader", None), group, part=1)


def _segments(segments: Any) -> dict[str, Any]:
    return {str(name): _plain(span) for name, span in dict(segments or {}).items()}


def dataset_lineage(dataset: Any) -> dict[str, Any]:
    """Describe a Qlib ``DatasetH`` as JSON (see the module docstring for the fields).

    Raises:
        TypeError: ``dataset`` has no handler and segments (it is not a Qlib DatasetH).
    """
    handler = getattr(dataset, "handler", None)
    if handler is None or not hasattr(dataset, "segments"):
        raise TypeError(f"expected a Qlib DatasetH (with .handler and .segments), got {_qualname(dataset)}")
    loader = getattr(handler, "data_loader", None)
    features = _columns(handler, "feature")
    feature_exprs = _fields(loader, "feature")
    config: dict[str, Any] = {
        key: _plain(getattr(handler, key))
        for key in ("start_time", "end_time", "process_type", "drop_raw", "fetch_orig")
        if hasattr(handler, key)
    }
    config["data_loader"] = _loader(loader)
    for key in ("shared_processors", "infer_processors", "learn_processors"):
        if hasattr(handler, key):
            config[key] = [_processor(p) for p in getattr(handler, key) or ()]
    out = {
        "class": _qualname(dataset),
        "handler": {"class": _qualname(handler), "config": config},
        "instruments": _plain(getattr(handler, "instruments", None)),
        "segments": _segments(dataset.segments),
        "label": {"columns": _columns(handler, "label"), "expressions": _fields(loader, "label")},
        "features": {
            "count": len(features) if features is not None else None,
            "blake3": digest_of(features) if features is not None else None,
            "expressions_blake3": digest_of(feature_exprs) if feature_exprs is not None else None,
        },
    }
    if hasattr(dataset, "step_len"):  # TSDatasetH: samples are windows of this many days
        out["step_len"] = _plain(dataset.step_len)
    return out


def environment() -> dict[str, str | None]:
    """Python's version and those of qlib, lightgbm, numpy, pandas, torch (None if absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in _DISTRIBUTIONS.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    return out


def lineage_for(dataset: Any) -> dict[str, Any]:
    """The lineage a save records for a model trained on ``dataset``."""
    return {"format": LINEAGE_FORMAT, "dataset": dataset_lineage(dataset), "environment": environment()}


def add_dataset_lineage(metadata: ModelMetadata, dataset: Any) -> None:
    """Fill ``metadata.lineage`` from ``dataset``; keys the caller already set are kept."""
    metadata.lineage = {**lineage_for(dataset), **(metadata.lineage or {})}
