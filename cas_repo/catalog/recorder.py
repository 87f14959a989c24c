"""Catalog queries by Qlib recorder id: dual-track loads and idempotent mlruns imports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .catalog import Session


@dataclass(frozen=True, slots=True)
class RecorderVersion:
    """A version that records a Qlib recorder run (and which artifact of it, if known)."""

    recorder_id: str
    artifact: str | None
    model_id: str
    version: int
    kind: str


def recorder_versions(s: Session, recorder_ids: Sequence[str] | None = None) -> list[RecorderVersion]:
    """Versions whose ``qlib_recorder_id`` is one of ``recorder_ids`` (any, when None).

    The artifact comes from ``lineage.recorder.artifact``, which dual-track saves and
    imports record; versions saved with a bare recorder id have none.
    """
    ids = None if recorder_ids is None else sorted(set(recorder_ids))
    if ids is not None and not ids:
        return []
    rows = s.rows(
        "SELECT qlib_recorder_id, lineage->>'$.recorder.artifact', model_id, version, kind "
        "FROM versions WHERE qlib_recorder_id IS NOT NULL "
        "AND (?::VARCHAR[] IS NULL OR qlib_recorder_id IN (SELECT unnest(?::VARCHAR[]))) "
        "ORDER BY model_id, version", [ids, ids])
    return [RecorderVersion(*r) for r in rows]
