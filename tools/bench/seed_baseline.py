"""The seed's storage, re-implemented faithfully as a baseline (never part of the package).

As in the seed design: ``save_model`` writes ``<models_dir>/<model_id>/model.pkl`` with
``pickle.dump`` (protocol 4, Python 3.11's default, which the seed relied on), a
``metadata.json`` snapshot beside it, and an ``INSERT OR REPLACE`` into a SQLite table,
opening and closing the SQLite connection per call; ``load_model`` is ``pickle.load`` plus
one SELECT. The seed never fsyncs; ``fsync=True`` adds an fsync of both files (not of the
folder) so its durability matches ours, and each benchmark says which variant it compares.
The seed overwrites ``model.pkl`` on every save, so keeping a history means one model_id
per version; the scenarios do exactly that.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from cas_repo import ModelMetadata

PROTOCOL = 4

_SCHEMA = """
    CREATE TABLE IF NOT EXISTS models (
        model_id TEXT PRIMARY KEY,
        experiment_name TEXT NOT NULL,
        model_type TEXT NOT NULL,
        hyperparameters TEXT,
        metrics TEXT,
        created_at TEXT NOT NULL,
        qlib_recorder_id TEXT,
        tags TEXT
    )
"""


def _seed_fields(md: ModelMetadata) -> dict[str, Any]:
    """The seed's ModelMetadata fields only (ours adds version, digest, parents…)."""
    full = asdict(md)
    return {k: full[k] for k in ("model_id", "experiment_name", "model_type", "hyperparameters",
                                 "metrics", "created_at", "qlib_recorder_id", "tags")}


class SeedRepository:
    """The seed's ``QlibModelRepository`` without the async shell or the Recorder dual track."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        root = Path(root)
        self.models_dir = root / "models"
        self.db_path = root / "models.db"
        self.fsync = fsync
        self.models_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.db_path))
        conn.execute(_SCHEMA)
        conn.commit()
        conn.close()

    def save_model(self, model: Any, metadata: ModelMetadata) -> str:
        model_id = metadata.model_id
        model_dir = self.models_dir / model_id
        model_dir.mkdir(parents=True, exist_ok=True)
        with open(model_dir / "model.pkl", "wb") as f:
            pickle.dump(model, f, protocol=PROTOCOL)
            self._sync(f)
        with open(model_dir / "metadata.json", "w") as f:
            json.dump(_seed_fields(metadata), f, indent=2, default=str)
            self._sync(f)
        conn = sqlite3.connect(str(self.db_path))
        conn.execute(
            "INSERT OR REPLACE INTO models (model_id, experiment_name, model_type, hyperparameters, "
            "metrics, created_at, qlib_recorder_id, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (model_id, metadata.experiment_name, metadata.model_type, json.dumps(metadata.hyperparameters),
             json.dumps(metadata.metrics), metadata.created_at.isoformat(), metadata.qlib_recorder_id,
             json.dumps(metadata.tags) if metadata.tags else None))
        conn.commit()
        conn.close()
        return model_id

    def _sync(self, f: Any) -> None:
        if self.fsync:
            f.flush()
            os.fsync(f.fileno())

    def load_model(self, model_id: str) -> tuple[Any, ModelMetadata]:
        model_dir = self.models_dir / model_id
        if not model_dir.exists():
            raise FileNotFoundError(f"model not found: {model_id}")
        with open(model_dir / "model.pkl", "rb") as f:
            model = pickle.load(f)
        return model, self.get_model_metadata(model_id)

    def get_model_metadata(self, model_id: str) -> ModelMetadata:
        conn = sqlite3.connect(str(self.db_path))
        row = conn.execute(
            "SELECT model_id, experiment_name, model_type, hyperparameters, metrics, created_at, "
            "qlib_recorder_id, tags FROM models WHERE model_id = ?", (model_id,)).fetchone()
        conn.close()
        if not row:
            raise ValueError(f"no metadata for model {model_id}")
        return ModelMetadata(
            model_id=row[0], experiment_name=row[1], model_type=row[2],
            hyperparameters=json.loads(row[3]), metrics=json.loads(row[4]),
            created_at=datetime.fromisoformat(row[5]), qlib_recorder_id=row[6],
            tags=json.loads(row[7]) if row[7] else {})
