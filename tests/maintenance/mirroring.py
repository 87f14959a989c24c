"""Helpers for the mirror and copy tests: small real stores, and what a store holds, key by key."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from cas_repo import ModelMetadata, ModelStore
from cas_repo.errors import ModelPurgedError
from cas_repo.maintenance import fsck
from cas_repo.maintenance.replica import open_location
from cas_repo.objects import ObjectBackend

PREFIXES = ("log/", "checkpoints/", "packs/")


def md(model_id: str, **metrics: float) -> ModelMetadata:
    return ModelMetadata(model_id, "exp", "LGBM", {"num_leaves": 31}, metrics or {"IC": 0.05},
                         datetime(2026, 1, 2, 3, 4, 5), tags={"stage": "dev"})


def model(i: int) -> np.ndarray:
    """A tiny model of its own content (each save writes one small pack)."""
    return np.arange(64, dtype=np.float64) + i


def contents(backend: ObjectBackend) -> dict[str, bytes]:
    """Every log commit, checkpoint and pack of a store, key -> bytes."""
    return {i.key: backend.read(i.key) for p in PREFIXES for i in backend.list(p)}


def store_contents(location: str | Path, options: dict[str, Any] | None = None) -> dict[str, bytes]:
    backend = open_location(location, options, source=False)
    try:
        return contents(backend)
    finally:
        backend.close()


def heads(store: ModelStore) -> dict[str, tuple[int, bytes]]:
    """Each live model's head version and its model's bytes, loaded (verified); gc may have purged one."""
    out = {}
    for m in store.list_models():
        try:
            obj, meta = store.load_model(m.model_id)
        except ModelPurgedError:
            out[m.model_id] = (m.saved_version(), b"purged")
            continue
        out[m.model_id] = (meta.saved_version(), _bytes(obj))
    return out


def _bytes(obj: Any) -> bytes:
    if isinstance(obj, dict):
        return b"".join(k.encode() + _bytes(v) for k, v in sorted(obj.items()))
    return np.asarray(obj).tobytes()


def opens_clean(location: str | Path, options: dict[str, Any] | None = None, catalog: Path | None = None, *,
                check: bool = True) -> dict[str, tuple[int, bytes]]:
    """Open a store as anyone would: its heads load (and, with ``check``, fsck finds nothing)."""
    with ModelStore(location, catalog=catalog, backend_options=options) as s:
        loaded = heads(s)
        if check:
            report = fsck(s)
            assert report.findings == (), report.findings
    return loaded
