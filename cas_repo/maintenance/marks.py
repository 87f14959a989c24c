"""Retire, restore and purge events: written like every other event, record first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from ..catalog import Session
from ..catalog.retention import MarkCommit, commit_marks, last_seqs
from ..digest import hash_bytes
from ..location import RECORD
from ..manifest import EventRecord
from ..objects.store import NewEntry
from ..repository import ModelStore
from .common import packs_of


@dataclass(frozen=True, slots=True)
class MarkRequest:
    """A retention event to record for one version."""

    model_id: str
    version: int
    kind: str
    metadata: dict[str, Any] = field(default_factory=dict)
    logical_size: int | None = None
    new_bytes: int | None = None


def write_marks(s: Session, store: ModelStore, requests: Sequence[MarkRequest], now: datetime) -> list[MarkCommit]:
    """Store the records of ``requests`` (one pack for all) and commit them in one transaction.

    Call with the catalog session open: the lock is what makes the allocated ``seq``
    numbers free, exactly as on the save path. A keyed store seals the records, as it
    seals every other event's.
    """
    if not requests:
        return []
    seqs = last_seqs(s, [r.model_id for r in requests])
    marks, entries = [], []
    for r in sorted(requests, key=lambda r: (r.model_id, r.version)):
        seqs[r.model_id] += 1
        record = EventRecord(r.kind, r.model_id, seqs[r.model_id], r.version, now, metadata=r.metadata)
        data = store._record_bytes(record)
        digest = hash_bytes(data)
        entries.append(NewEntry(digest, RECORD, data, compress=False))
        marks.append(MarkCommit(r.model_id, record.seq, r.kind, r.version, now, digest.hex,
                                r.logical_size, r.new_bytes))
    locs = store.objects.write(entries)
    commit_marks(s, marks, locs, packs_of(locs), now)
    return marks
