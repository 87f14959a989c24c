"""The dedup audit: what every experiment, model and version costs, and what is shared.

Every figure comes from one SQL query over the catalog (:mod:`cas_repo.catalog.audit`,
quoted in docs/maintenance.md); the walk cross-checks the catalog's pack and object
figures against the object store itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from ..catalog.audit import audit_tables
from ..catalog.checks import all_locations
from ..objects.keys import CHECKPOINTS, LOG
from ..repository import ModelStore
from .common import ProgressFactory, maintenance_lock, no_progress, utcnow
from .scan import list_packs, scan_packs


def _ratio(logical: int, physical: int) -> float:
    return logical / physical if physical else 0.0


@dataclass(frozen=True, slots=True)
class Totals:
    """Whole-store figures; ``physical_bytes`` is every pack file, garbage included."""

    models: int
    deleted_models: int
    versions: int
    purged_versions: int
    logical_bytes: int
    physical_bytes: int
    packs: int
    objects: int
    chunks: int
    manifests: int
    records: int
    content_bytes: int
    content_stored_bytes: int
    history_bytes: int
    pack_overhead_bytes: int

    @property
    def dedup_ratio(self) -> float:
        return _ratio(self.logical_bytes, self.physical_bytes)

    @property
    def unreferenced_bytes(self) -> int:
        """Pack bytes holding neither live content nor history: what gc and repack can free."""
        return self.physical_bytes - self.content_stored_bytes - self.history_bytes - self.pack_overhead_bytes


@dataclass(frozen=True, slots=True)
class ExperimentUsage:
    experiment_name: str
    models: int
    versions: int
    logical_bytes: int
    physical_bytes: int
    unique_bytes: int
    shared_bytes: int

    @property
    def dedup_ratio(self) -> float:
        return _ratio(self.logical_bytes, self.physical_bytes)


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """``reclaimable_bytes``: stored bytes no other model uses, freed if this model were purged."""

    model_id: str
    experiment_name: str
    deleted: bool
    versions: int
    logical_bytes: int
    physical_bytes: int
    reclaimable_bytes: int
    shared_bytes: int

    @property
    def dedup_ratio(self) -> float:
        return _ratio(self.logical_bytes, self.physical_bytes)


@dataclass(frozen=True, slots=True)
class VersionUsage:
    """``unique_bytes``: stored bytes no other version uses; ``shared_bytes``: the rest."""

    model_id: str
    version: int
    experiment_name: str
    saved_at: datetime
    manifest: str
    logical_bytes: int
    physical_bytes: int
    unique_bytes: int
    shared_bytes: int


@dataclass(frozen=True, slots=True)
class SharedChunk:
    digest: str
    size: int
    stored_size: int
    versions: int
    models: int
    bytes_saved: int


@dataclass(frozen=True, slots=True)
class IdenticalVersions:
    """One manifest saved under several model_ids."""

    manifest: str
    versions: int
    models: int
    logical_bytes: int
    refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GrowthPoint:
    """One version in save order: its logical size and the stored bytes it was first to need."""

    model_id: str
    version: int
    saved_at: datetime
    logical_bytes: int
    new_bytes: int


@dataclass(frozen=True, slots=True)
class StoreWalk:
    """The object store counted directly, and where it disagrees with the catalog."""

    packs: int
    pack_bytes: int
    entries: int
    distinct_entries: int
    differences: tuple[str, ...]

    @property
    def agrees(self) -> bool:
        return not self.differences


@dataclass(frozen=True, slots=True)
class LogUsage:
    """The store's history as stored: its log commits and checkpoints (not in packs)."""

    commits: int
    log_bytes: int
    checkpoints: int
    checkpoint_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.log_bytes + self.checkpoint_bytes


@dataclass(frozen=True, slots=True)
class AliasPin:
    """A version an alias points at: gc and retention keep it; ``unique_bytes`` are the stored
    bytes no other version shares (what moving the alias away could let gc free later)."""

    model_id: str
    alias: str
    version: int
    logical_bytes: int
    unique_bytes: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    at: datetime
    totals: Totals
    experiments: tuple[ExperimentUsage, ...]
    models: tuple[ModelUsage, ...]
    versions: tuple[VersionUsage, ...]
    shared_chunks: tuple[SharedChunk, ...]
    identical_versions: tuple[IdenticalVersions, ...]
    growth: tuple[GrowthPoint, ...]
    walk: StoreWalk | None
    log: LogUsage
    pins: tuple[AliasPin, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able values, derived ratios included."""
        out = asdict(self)
        out["totals"]["dedup_ratio"] = self.totals.dedup_ratio
        out["totals"]["unreferenced_bytes"] = self.totals.unreferenced_bytes
        for row, experiment in zip(out["experiments"], self.experiments):
            row["dedup_ratio"] = experiment.dedup_ratio
        for row, model in zip(out["models"], self.models):
            row["dedup_ratio"] = model.dedup_ratio
        if self.walk is not None:
            out["walk"]["agrees"] = self.walk.agrees
        out["log"]["total_bytes"] = self.log.total_bytes
        return out


def _build(cls: type, row: dict[str, Any]) -> Any:
    values = {}
    for f in fields(cls):
        v = row[f.name]
        if isinstance(v, datetime):
            v = v.replace(tzinfo=UTC)
        elif isinstance(v, list):
            v = tuple(v)
        values[f.name] = v
    return cls(**values)


def audit(store: ModelStore, *, walk: bool = True, progress: ProgressFactory = no_progress) -> AuditReport:
    """The dedup audit of the whole store; ``walk`` also cross-checks against the object store."""
    with maintenance_lock(store.catalog.path):
        with store.catalog.session() as s:
            t = audit_tables(s)
            locs = all_locations(s) if walk else []
        report_walk = _walk(store, _build(Totals, t["totals"][0]), locs, progress) if walk else None
    return AuditReport(
        utcnow(), _build(Totals, t["totals"][0]),
        tuple(_build(ExperimentUsage, r) for r in t["experiments"]),
        tuple(_build(ModelUsage, r) for r in t["models"]),
        tuple(_build(VersionUsage, r) for r in t["versions"]),
        tuple(_build(SharedChunk, r) for r in t["shared_chunks"]),
        tuple(_build(IdenticalVersions, r) for r in t["identical_versions"]),
        tuple(_build(GrowthPoint, r) for r in t["growth"]),
        report_walk, log_usage(store),
        tuple(_build(AliasPin, r) for r in t["pins"]))


def log_usage(store: ModelStore) -> LogUsage:
    """Count and size the log commits and checkpoints (one listing of each prefix)."""
    backend = store.objects.backend
    commits = [i.size for i in backend.list(LOG + "/")]
    checkpoints = [i.size for i in backend.list(CHECKPOINTS + "/")]
    return LogUsage(len(commits), sum(commits), len(checkpoints), sum(checkpoints))


def _walk(store: ModelStore, totals: Totals, locs: list, progress: ProgressFactory) -> StoreWalk:
    scans = scan_packs(store.objects, list_packs(store.objects), progress=progress, label="audit: walking packs")
    entries = {(l.pack, l.digest): l for sc in scans.values() for l in sc.entries or ()}
    diffs = []
    pack_bytes = sum(sc.size for sc in scans.values())
    if pack_bytes != totals.physical_bytes or len(scans) != totals.packs:
        diffs.append(f"the store holds {len(scans)} packs of {pack_bytes} bytes; the catalog lists "
                     f"{totals.packs} packs of {totals.physical_bytes} bytes")
    unreadable = [sc.pack.hex for sc in scans.values() if not sc.readable]
    if unreadable:
        diffs.append(f"{len(unreadable)} packs cannot be read: {', '.join(p[:16] for p in unreadable[:5])}")
    misplaced = [l for l in locs if entries.get((l.pack, l.digest)) != l]
    if misplaced:
        diffs.append(f"{len(misplaced)} catalog objects are not where the catalog says, e.g. "
                     f"{misplaced[0].digest.hex[:16]} in pack {misplaced[0].pack.hex[:16]}")
    return StoreWalk(len(scans), pack_bytes, len(entries), len({d for _, d in entries}), tuple(diffs))
