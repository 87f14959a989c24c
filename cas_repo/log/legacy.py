"""Upgrading a format-1 store: its history, read from the event records in its packs.

Format 1 kept the order of events in a DuckDB catalog beside the packs and an event
record per event inside them. The upgrade turns those records into the operations of
the log's first commit, ordered per model by ``seq`` (for a duplicate ``seq`` — a record
left by an interrupted commit — the later record wins, as format 1's own rebuild had
it), preceded by one operation adopting every entry of every pack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..canonical import canonical_json, parse_object
from ..digest import Digest
from ..errors import CasRepoError, IntegrityError
from ..location import MANIFEST, RECORD, Location
from ..manifest import Manifest
from ..metadata import parse_ref
from ..objects.store import ObjectStore
from ..sealing import StoreKey
from .ops import AdoptEntries, EventOp, MarkOp, Op, SaveOp

_MARKS = ("retire", "restore", "purge")
RECORD_FORMAT = "cas-repo/record/1"
# retire/restore: a retention policy's version tombstone and its undo; purge: gc freed the
# content of a version (its history stays).
EVENT_KINDS = ("save", "rollback", "delete", "undelete", "tag", *_MARKS)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a model's history, as stored in the object store.

    ``seq`` numbers a model's events 1, 2, 3…; ``version`` is the version a save or
    rollback created, or the head version a delete/undelete/tag applied to.
    """

    kind: str
    model_id: str
    seq: int
    version: int
    at: datetime
    manifest: Digest | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parents: tuple[str, ...] = ()
    rollback_of: int | None = None
    tags: dict[str, str | None] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return canonical_json({
            "format": RECORD_FORMAT,
            "kind": self.kind,
            "model_id": self.model_id,
            "seq": self.seq,
            "version": self.version,
            "at": self.at.isoformat(),
            "manifest": self.manifest.hex if self.manifest else None,
            "metadata": self.metadata,
            "parents": list(self.parents),
            "rollback_of": self.rollback_of,
            "tags": self.tags,
        })

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> EventRecord:
        obj = parse_object(data, "event record")
        if obj.get("format") != RECORD_FORMAT:
            raise IntegrityError(f"unknown event record format {obj.get('format')!r}")
        try:
            rec = cls(
                kind=obj["kind"],
                model_id=obj["model_id"],
                seq=int(obj["seq"]),
                version=int(obj["version"]),
                at=datetime.fromisoformat(obj["at"]),
                manifest=Digest.from_hex(obj["manifest"]) if obj["manifest"] else None,
                metadata=dict(obj["metadata"]),
                parents=tuple(obj["parents"]),
                rollback_of=obj["rollback_of"],
                tags=dict(obj["tags"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed event record ({exc!r})") from exc
        if rec.kind not in EVENT_KINDS:
            raise IntegrityError(f"unknown event kind {rec.kind!r}")
        return rec


def legacy_history(objects: ObjectStore, key: StoreKey | None = None) -> list[Op]:
    """The operations that recreate a format-1 store's history; [] for a store with no records."""
    locs: dict[str, Location] = {}
    packs = []
    for pack, info in sorted(objects.list_packs(), key=lambda p: (p[1].mtime, p[0].hex)):
        try:
            entries = objects.pack_index(pack)
        except CasRepoError:
            continue  # fsck reports unreadable packs; what they held is lost either way
        packs.append((pack.hex, info.size, len(entries)))
        for loc in entries:
            locs.setdefault(loc.digest.hex, loc)  # the oldest copy, as format 1 recorded it
    wanted = [l for l in locs.values() if l.kind in (MANIFEST, RECORD)]
    manifests: dict[str, Manifest] = {}
    records: dict[tuple[str, int], EventRecord] = {}
    for loc in wanted:
        try:
            raw = objects.read(loc)
            if loc.kind == MANIFEST:
                manifests[loc.digest.hex] = Manifest.from_bytes(raw)
                continue
            if key is not None:
                key.check(raw)
            rec = EventRecord.from_bytes(raw)
        except IntegrityError:
            continue
        k = (rec.model_id, rec.seq)
        if k not in records or rec.at > records[k].at:
            records[k] = rec
    if not records:
        return []
    at = max(r.at for r in records.values())
    ops: list[Op] = [AdoptEntries(
        tuple(l for l in locs.values() if l.kind != RECORD), tuple(packs),
        tuple((d, tuple((c.digest.hex, c.size) for c in m.chunks())) for d, m in manifests.items()), at)]
    ops += _events([records[k] for k in sorted(records)], manifests, locs)
    return ops


def _events(records: Sequence[EventRecord], manifests: dict[str, Manifest],
            locs: dict[str, Location]) -> list[Op]:
    out: list[Op] = []
    deleted: dict[str, bool] = {}
    seen: set[str] = set()
    for rec in records:
        if rec.kind in ("save", "rollback"):
            deleted[rec.model_id] = False
            m = rec.manifest.hex if rec.manifest else ""
            size = manifests[m].size if m in manifests else 0
            fresh = [d for d in ([m] + [c.digest.hex for c in manifests[m].chunks()] if m in manifests else [])
                     if d not in seen and d in locs]
            seen.update(fresh)
            out.append(SaveOp.from_metadata_json(
                rec.metadata, model_id=rec.model_id, version=rec.version, seq=rec.seq, kind=rec.kind,
                rollback_of=rec.rollback_of, manifest=m, at=rec.at, logical_size=size,
                new_bytes=sum(locs[d].stored_size for d in fresh),
                parents=tuple(parse_ref(p) for p in rec.parents)))
        elif rec.kind in _MARKS:
            out.append(MarkOp(rec.model_id, rec.seq, rec.kind, rec.version, rec.at, "",
                                  rec.metadata.get("logical_size"), rec.metadata.get("new_bytes")))
        else:
            if rec.kind != "tag":
                deleted[rec.model_id] = rec.kind == "delete"
            out.append(EventOp(rec.model_id, rec.seq, rec.kind, rec.version, rec.at, "",
                                   deleted.get(rec.model_id, False), dict(rec.tags)))
    return out


