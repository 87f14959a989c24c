"""Conversions between catalog rows, event records and ModelMetadata (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .catalog import VersionRow
from .catalog.values import HeadBatch
from .digest import Digest
from .location import Location
from .metadata import ModelMetadata
from .objects.pack import pack_size


def metadata_json(md: ModelMetadata) -> dict[str, Any]:
    return {
        "model_id": md.model_id,
        "experiment_name": md.experiment_name,
        "model_type": md.model_type,
        "hyperparameters": md.hyperparameters,
        "metrics": md.metrics,
        "created_at": md.created_at.isoformat(),
        "qlib_recorder_id": md.qlib_recorder_id,
        "tags": md.tags,
        "parents": list(md.parents),
        "lineage": md.lineage,
    }


def to_metadata(row: VersionRow) -> ModelMetadata:
    m = row.metadata
    return ModelMetadata(
        model_id=row.model_id,
        experiment_name=m["experiment_name"],
        model_type=m["model_type"],
        hyperparameters=m["hyperparameters"],
        metrics=m["metrics"],
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


def batch_to_metadata(b: HeadBatch) -> list[ModelMetadata]:
    """What _to_metadata gives for each head, without a VersionRow per model."""
    return [
        ModelMetadata(model_id=b.model_id[i], experiment_name=b.experiment_name[i], model_type=b.model_type[i],
                      hyperparameters=b.hyperparameters[i], metrics=b.metrics[i],
                      created_at=datetime.fromisoformat(b.created_at[i]), qlib_recorder_id=b.qlib_recorder_id[i],
                      tags=b.tags[i], version=b.version[i], digest=b.manifest[i], parents=b.parents[i],
                      deleted=b.deleted[i], rollback_of=b.rollback_of[i], lineage=b.lineage[i])
        for i in range(len(b))
    ]


def packs_of(locs: Sequence[Location]) -> tuple[tuple[str, int, int], ...]:
    """(pack, size, entries) of the packs holding ``locs`` — all written by one call."""
    packs: dict[Digest, list[int]] = {}
    for l in locs:
        acc = packs.setdefault(l.pack, [0, 0])
        acc[0] += l.stored_size
        acc[1] += 1
    return tuple((p.hex, pack_size(stored, n), n) for p, (stored, n) in packs.items())
