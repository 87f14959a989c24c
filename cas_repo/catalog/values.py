"""Values the catalog takes and returns (no SQL rows leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..location import Location


@dataclass(frozen=True, slots=True)
class ModelState:
    """The head of one model_id."""

    model_id: str
    head_version: int
    last_seq: int
    deleted: bool
    experiment_name: str
    model_type: str


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version as the catalog knows it."""

    model_id: str
    version: int
    manifest: str
    kind: str
    rollback_of: int | None
    saved_at: datetime
    logical_size: int
    metadata: dict[str, Any]
    tags: dict[str, str]
    parents: tuple[str, ...]
    deleted: bool
    record: str = ""


@dataclass(frozen=True, slots=True)
class SaveCommit:
    """Everything one save or rollback adds to the catalog, applied in one transaction."""

    model_id: str
    version: int
    seq: int
    kind: str
    rollback_of: int | None
    manifest: str
    record: str
    at: datetime
    created_at: datetime
    experiment_name: str
    model_type: str
    qlib_recorder_id: str | None
    metrics: dict[str, float]
    hyperparameters: Any
    lineage: Any
    metadata_json: str
    logical_size: int
    new_bytes: int
    tags: dict[str, str]
    parents: tuple[tuple[str, int], ...]
    new_locations: tuple[Location, ...] = ()
    manifest_chunks: tuple[tuple[str, int], ...] | None = None
    new_packs: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class EventCommit:
    """A delete, undelete or tag event."""

    model_id: str
    seq: int
    kind: str
    version: int
    at: datetime
    record: str
    deleted: bool
    set_tags: dict[str, str | None] = field(default_factory=dict)
    new_locations: tuple[Location, ...] = ()
    new_packs: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Whole-store accounting: what full copies would take vs what is stored."""

    models: int
    versions: int
    logical_bytes: int
    unique_bytes: int
    physical_bytes: int
    packs: int
    objects: int

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per physical byte (higher is better)."""
        return self.logical_bytes / self.physical_bytes if self.physical_bytes else 1.0
