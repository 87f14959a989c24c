"""Values the catalog's queries return (no SQL rows leak out); what it folds in is :mod:`cas_repo.log.ops`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
    """One entry of a model's event log.

    ``tags`` is what a save or tag event set (None: removed); ``metrics`` what a save
    recorded or a metrics event logged; ``author`` the person whose commit made it (None:
    a commit from before commits named one) and ``host`` the machine.
    """

    model_id: str
    seq: int
    kind: str
    version: int
    at: datetime
    tags: dict[str, str | None]
    author: str | None = None
    host: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


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
class AliasPointer:
    """An alias as it stands, ``model_id@alias`` -> ``version``, with its last move: when, the
    writer (``host/pid/token``) and the person (None for commits written before authors)."""

    model_id: str
    alias: str
    version: int
    moved_at: datetime
    moved_by: str
    author: str | None = None

    @property
    def host(self) -> str:
        """The machine of the process that moved it (the first part of ``moved_by``)."""
        return self.moved_by.partition("/")[0]


@dataclass(frozen=True, slots=True)
class AliasChange:
    """One recorded move of an alias: ``from_version`` None when it was new, ``to_version``
    None when it was removed; ``moved_by`` is the writer (``host/pid/token``) and ``author``
    the person (None: a commit from before commits named one)."""

    model_id: str
    alias: str
    from_version: int | None
    to_version: int | None
    moved_at: datetime
    moved_by: str
    log_position: int
    author: str | None = None

    @property
    def host(self) -> str:
        """The machine of the process that moved it (the first part of ``moved_by``)."""
        return self.moved_by.partition("/")[0]


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One policy operation of the store's log: the policy it set (its canonical JSON
    object), or None when it cleared it; ``previous`` the commit whose policy it replaced;
    ``set_by`` the writer (``host/pid/token``), ``author`` the person."""

    log_position: int
    previous: int | None
    set_at: datetime
    set_by: str
    policy: dict | None
    author: str | None = None

    @property
    def host(self) -> str:
        return self.set_by.partition("/")[0]


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One metric value as recorded: at the save (``source`` "save") or logged later ("log")."""

    model_id: str
    version: int
    metric: str
    value: float
    source: str
    recorded_at: datetime
    author: str | None
    seq: int
