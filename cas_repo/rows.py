"""A version's row as the seed contract's :class:`~cas_repo.metadata.ModelMetadata` (no I/O)."""

from __future__ import annotations

from datetime import datetime

from .log.state import VersionRow
from .metadata import ModelMetadata


def to_metadata(row: VersionRow) -> ModelMetadata:
    """The metadata callers get for ``row``: its stored fields, its tags and metrics now (a value
    logged after the save supersedes the saved one), its place in history."""
    m = row.metadata
    return ModelMetadata(
        model_id=row.model_id,
        experiment_name=m["experiment_name"],
        model_type=m["model_type"],
        hyperparameters=m["hyperparameters"],
        metrics={**m["metrics"], **row.logged} if row.logged else m["metrics"],
        created_at=datetime.fromisoformat(m["created_at"]),
        qlib_recorder_id=m["qlib_recorder_id"],
        tags=dict(row.tags),
        version=row.version,
        digest=row.manifest,
        parents=list(row.parents),
        deleted=row.deleted,
        rollback_of=row.rollback_of,
        lineage=m.get("lineage", {}),
    )
