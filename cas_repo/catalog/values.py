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
    #: The manifest's chunk list, given only when the manifest itself is new.
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
class MarkCommit:
    """One retire, restore or purge event to record."""

    model_id: str
    seq: int
    kind: str
    version: int
    at: datetime
    record: str
    logical_size: int | None = None
    new_bytes: int | None = None


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


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a model's event log; ``tags`` is what a save or tag event set (None: removed)."""

    model_id: str
    seq: int
    kind: str
    version: int
    at: datetime
    tags: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class ModelAt:
    """A model's state at a point in time, replayed from its events."""

    model_id: str
    version: int
    deleted: bool
    last_seq: int
    last_event_at: datetime

    @property
    def loaded_version(self) -> int | None:
        """The version ``load_model(model_id)`` returned then (None while tombstoned)."""
        return None if self.deleted else self.version


@dataclass(frozen=True, slots=True)
class LineageNode:
    """A version reached through lineage edges, ``depth`` edges away at the nearest."""

    model_id: str
    version: int
    depth: int
    relation: str

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"


@dataclass(frozen=True, slots=True)
class Lineage:
    """Ancestors and descendants of one version, through parent and rollback edges."""

    model_id: str
    version: int
    ancestors: tuple[LineageNode, ...]
    descendants: tuple[LineageNode, ...]


@dataclass(frozen=True, slots=True)
class ContentDiff:
    """Bytes two manifests share and differ by, counting each distinct chunk once."""

    shared_bytes: int
    added_bytes: int
    removed_bytes: int
    shared_chunks: int
    added_chunks: int
    removed_chunks: int

    @property
    def shared_fraction(self) -> float:
        """Share of version b's distinct content that version a already holds."""
        total = self.shared_bytes + self.added_bytes
        return self.shared_bytes / total if total else 1.0


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What ``export`` wrote: one Parquet file per view, all from one snapshot."""

    directory: str
    exported_at: datetime
    rows: dict[str, int]
    bytes: int


@dataclass(frozen=True, slots=True)
class HeadBatch:
    """The head versions of many models, column by column (index i = one model).

    One value instead of a VersionRow per model: listing 100,000 models is dominated by
    object construction, so the columns go straight into ModelMetadata.
    """

    model_id: tuple[str, ...]
    version: tuple[int, ...]
    manifest: tuple[str, ...]
    kind: tuple[str, ...]
    rollback_of: tuple[int | None, ...]
    saved_at: tuple[datetime, ...]
    logical_size: tuple[int, ...]
    created_at: tuple[str, ...]
    deleted: tuple[bool, ...]
    tags: list[dict[str, str]]
    parents: list[list[str]]
    experiment_name: tuple[str, ...]
    model_type: tuple[str, ...]
    qlib_recorder_id: tuple[str | None, ...]
    hyperparameters: list[Any]
    metrics: list[Any]
    lineage: list[Any]

    def __len__(self) -> int:
        return len(self.model_id)


@dataclass(frozen=True, slots=True)
class AliasChange:
    """One recorded move of an alias: ``from_version`` None when it was new, ``to_version``
    None when it was removed; ``moved_by`` is the writer (``host/pid/token``)."""

    model_id: str
    alias: str
    from_version: int | None
    to_version: int | None
    moved_at: datetime
    moved_by: str
    log_position: int
