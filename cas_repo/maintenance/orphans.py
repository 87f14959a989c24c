"""Event records in the store that the catalog does not know: another catalog's, or lost ones.

A record the catalog lacks is either an interrupted commit — superseded once the model's
next event takes its ``seq`` — or history this catalog never saw: saves made through
another catalog on the same object store, or rows a damaged catalog lost. gc must not
delete the latter (its versions need their packs), and fsck reports both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from ..catalog.maintenance import known_events, referenced_records
from ..errors import IntegrityError
from ..location import RECORD, Location
from ..manifest import EventRecord
from ..repository import ModelStore
from .scan import PackScan, read_verified


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A record no catalog event stands for, and the pack that holds it."""

    record: EventRecord
    pack: str

    @property
    def ref(self) -> str:
        return f"{self.record.model_id}#{self.record.seq}"


def record_entries(scans: Iterable[PackScan], cutoff: datetime | None) -> dict[str, Location]:
    """One location per record digest found in ``scans`` (only packs older than ``cutoff``, if given)."""
    out: dict[str, Location] = {}
    for scan in scans:
        if cutoff is None or scan.mtime <= cutoff:
            for loc in scan.entries or ():
                if loc.kind == RECORD:
                    out.setdefault(loc.digest.hex, loc)
    return out


def unknown_events(store: ModelStore, scans: Iterable[PackScan], cutoff: datetime | None) -> list[UnknownEvent]:
    """Records in ``scans`` that no catalog event stands for and that no later event superseded.

    Packs younger than ``cutoff`` are skipped: their records may belong to a save about
    to commit. A damaged record is skipped too (fsck --full reports its pack).
    """
    records = record_entries(scans, cutoff)
    with store.catalog.session() as s:
        loose = {d: l for d, l in records.items() if d not in referenced_records(s, list(records))}
    parsed = []
    for digest, got in read_verified(store.objects, list(loose.values())).items():
        try:
            if not isinstance(got, Exception):
                parsed.append((EventRecord.from_bytes(got), loose[digest].pack.hex))
        except IntegrityError:
            continue  # not a record this cas-repo can read; fsck reports damaged packs
    with store.catalog.session() as s:
        known = known_events(s, [(r.model_id, r.seq) for r, _ in parsed])
    return sorted((UnknownEvent(r, pack) for r, pack in parsed
                   if known.get((r.model_id, r.seq)) is None or known[(r.model_id, r.seq)] < r.at),
                  key=lambda u: (u.record.model_id, u.record.seq))
