"""fsck: does the object store hold everything the catalog says it does, intact?

Quick mode reads every pack's index, every manifest and every event record (all small)
and compares them with the catalog; ``full`` also re-hashes every byte of every pack.
Nothing changes unless ``repair`` is set (see :mod:`.repair`), and a repair never
deletes an object anything refers to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..catalog.checks import (EventRow, all_locations, event_rows, event_times, manifest_chunk_lists,
                              stored_manifests, users_of)
from ..catalog.maintenance import catalog_packs, live_digests, unlocated_live
from ..errors import IntegrityError, ObjectNotFoundError, StoreError
from ..location import Location
from ..manifest import EventRecord, Manifest
from ..objects import ObjectStore, open_backend
from ..repository import ModelStore
from .common import DEFAULT_GRACE, ProgressFactory, maintenance_lock, no_progress, progress_bar, utcnow
from .findings import WARNING, Finding, FsckReport
from .orphans import record_entries, unknown_events
from .scan import PackScan, list_packs, read_verified, scan_packs

_AFFECTED_SHOWN = 10


@dataclass
class Facts:
    """What the catalog claims and what the store holds, gathered once (internal, mutable)."""

    rows: dict[str, Location]
    rows_by_pack: dict[str, list[Location]]
    listed: dict[str, int]
    live: set[str]
    unlocated: list[str]
    manifests: dict[str, set[int]]
    chunk_lists: dict[str, list[tuple[str, int]]]
    events: list[EventRow]
    times: dict[tuple[str, int], datetime]
    scans: dict[str, PackScan]
    cutoff: datetime
    bad: set[str] = field(default_factory=set)          # digests whose catalog location is unusable
    intact: set[str] = field(default_factory=set)       # packs whose full hash matched
    in_flight: int = 0


@dataclass
class Found:
    """Findings so far, each with the digests it concerns and any data a repair needs."""

    items: list[tuple[Finding, list[str], object]] = field(default_factory=list)

    def add(self, code: str, subject: str, detail: str = "", digests: list[str] | None = None,
            payload: object = None, severity: str = "") -> None:
        self.items.append((Finding(code, subject, detail, severity=severity), digests or [], payload))


def fsck(store: ModelStore, *, full: bool = False, repair: bool = False, grace: timedelta = DEFAULT_GRACE,
         now: datetime | None = None, progress: ProgressFactory = no_progress) -> FsckReport:
    """Check the store; with ``repair``, fix what can be fixed without losing anything."""
    cutoff = (now or utcnow()) - grace
    with maintenance_lock(store.catalog.path):
        facts = gather(store, cutoff, progress)
        found = Found()
        _check_packs(facts, found)
        _check_rows(facts, found)
        for d in facts.unlocated:
            found.add("unlocated", d, digests=[d])
        _check_content(store, facts, found, progress)
        _check_unknown_events(store, facts, found)
        for info in store.objects.backend.list_incomplete():
            if info.mtime <= cutoff:
                found.add("temp-file", info.key, f"{info.size} bytes, written {info.mtime:%Y-%m-%d %H:%M} UTC",
                          payload=info)
        hashed = _check_hashes(store, facts, found, progress) if full else 0
        if repair:
            from .repair import repair_findings

            repair_findings(store, facts, found, full)
        findings = _with_affected(store, found)
    return FsckReport(full, repair, len(facts.scans), sum(s.size for s in facts.scans.values()), len(facts.rows),
                      len(facts.events), hashed, facts.in_flight, findings)


def fsck_store(root: str | os.PathLike[str], *, catalog: str | os.PathLike[str] | None = None,
               **options: Any) -> FsckReport:
    """fsck by location: a missing catalog file is reported, not silently created empty."""
    from .rebuild import store_locations

    objects_url, path = store_locations(root, catalog)
    if not path.exists():
        objects = ObjectStore(open_backend(objects_url))
        try:
            packs = list_packs(objects)
        finally:
            objects.close()
        if packs:
            finding = Finding("catalog-empty", str(path), f"the catalog file does not exist; the store holds "
                              f"{len(packs)} packs")
            return FsckReport(bool(options.get("full")), bool(options.get("repair")), len(packs),
                              sum(i.size for _, i in packs), 0, 0, 0, 0, (finding,))
    with ModelStore(root, catalog=catalog) as store:
        return fsck(store, **options)


def gather(store: ModelStore, cutoff: datetime, progress: ProgressFactory) -> Facts:
    with store.catalog.session() as s:
        locs = all_locations(s)
        listed = catalog_packs(s)
        live = live_digests(s)
        unlocated = unlocated_live(s)
        manifests = stored_manifests(s)
        chunk_lists = manifest_chunk_lists(s, list(manifests))
        events = event_rows(s)
        times = event_times(s)
    by_pack: dict[str, list[Location]] = {}
    for loc in locs:
        by_pack.setdefault(loc.pack.hex, []).append(loc)
    scans = {d.hex: sc for d, sc in scan_packs(store.objects, list_packs(store.objects), progress=progress,
                                               label="fsck: reading pack indexes").items()}
    return Facts({l.digest.hex: l for l in locs}, by_pack, listed, live, unlocated, manifests, chunk_lists,
                 events, times, scans, cutoff)


def _check_packs(f: Facts, found: Found) -> None:
    for pack in sorted(set(f.rows_by_pack) | set(f.listed)):
        rows = f.rows_by_pack.get(pack, [])
        live = [l.digest.hex for l in rows if l.digest.hex in f.live]
        scan = f.scans.get(pack)
        if scan is None:
            f.bad.update(l.digest.hex for l in rows)
            if live:
                found.add("pack-missing", pack, f"{len(rows)} objects, {len(live)} of them live", live)
            else:
                found.add("stale-rows" if rows else "stale-pack-row", pack)
            continue
        if not scan.readable and rows:
            f.bad.update(l.digest.hex for l in rows)
            found.add("pack-damaged", pack, scan.error or "", live)
        if pack in f.listed and f.listed[pack] != scan.size:
            found.add("pack-size", pack, f"the file is {scan.size} bytes, {f.listed[pack]} were written",
                      live, payload=scan.size)
    for pack, scan in sorted(f.scans.items()):
        if pack in f.rows_by_pack or pack in f.listed:
            continue
        if scan.mtime > f.cutoff:
            f.in_flight += 1  # a save may be about to commit it
        else:
            found.add("orphan-pack", pack, f"{scan.size} bytes, written {scan.mtime:%Y-%m-%d %H:%M} UTC"
                      + ("" if scan.readable else f"; unreadable: {scan.error}"))


def _check_rows(f: Facts, found: Found) -> None:
    for pack, rows in sorted(f.rows_by_pack.items()):
        scan = f.scans.get(pack)
        if scan is None or not scan.readable:
            continue
        index = {l.digest.hex: l for l in scan.entries or ()}
        wrong = [r.digest.hex for r in rows if _key(index.get(r.digest.hex)) != _key(r)]
        if wrong:
            f.bad.update(wrong)
            live = [d for d in wrong if d in f.live]
            found.add("row-mismatch", pack, f"{len(wrong)} rows do not match the pack's index", live or wrong,
                      severity="" if live else WARNING)


def _key(loc: Location | None) -> tuple | None:
    return None if loc is None else (loc.digest, loc.kind, loc.pack, loc.offset, loc.stored_size, loc.size, loc.codec)


def _check_content(store: ModelStore, f: Facts, found: Found, progress: ProgressFactory) -> None:
    """Read every stored manifest and event record and compare each with its catalog rows."""
    key = store._key  # a keyed store also checks every record's seal
    wanted = [d for d in list(f.manifests) + [e.record for e in f.events] if d in f.rows and d not in f.bad]
    data = {}
    with progress_bar(progress, len(wanted), "fsck: reading manifests and records") as bar:
        for i in range(0, len(wanted), 4096):
            batch = [f.rows[d] for d in wanted[i : i + 4096]]
            data.update(read_verified(store.objects, batch))
            bar.advance(len(batch))
    for digest, sizes in sorted(f.manifests.items()):
        got = data.get(digest)
        if got is None:
            continue
        try:
            if isinstance(got, Exception):
                raise got
            manifest = Manifest.from_bytes(got)
        except (IntegrityError, ObjectNotFoundError, StoreError) as exc:
            f.bad.add(digest)
            found.add("entry-corrupt", digest, f"manifest: {str(exc).split('; ')[0]}", [digest])
            continue
        chunks = [(c.digest.hex, c.size) for c in manifest.chunks()]
        if chunks != f.chunk_lists.get(digest) or sizes != {manifest.size}:
            found.add("manifest-mismatch", digest, f"manifest lists {len(chunks)} chunks, {manifest.size} bytes; "
                      f"the catalog has {len(f.chunk_lists.get(digest) or [])} chunks, sizes {sorted(sizes)}",
                      [digest], payload=chunks)
    for ev in f.events:
        got = data.get(ev.record)
        if got is None:
            continue
        try:
            if isinstance(got, Exception):
                raise got
            rec = EventRecord.from_bytes(got)
        except (IntegrityError, ObjectNotFoundError, StoreError) as exc:
            f.bad.add(ev.record)
            found.add("entry-corrupt", ev.record, f"record of {ev.model_id}#{ev.seq}: {str(exc).split('; ')[0]}",
                      [ev.record])
            continue
        if key is not None:
            try:
                key.check(got)
            except IntegrityError as exc:
                found.add("record-seal", f"{ev.model_id}#{ev.seq}", exc.args[0].split("; ")[0], [ev.record])
        if (rec.model_id, rec.seq, rec.kind, rec.version) != (ev.model_id, ev.seq, ev.kind, ev.version):
            found.add("record-mismatch", f"{ev.model_id}#{ev.seq}",
                      f"catalog: {ev.kind} v{ev.version}; record: {rec.model_id}#{rec.seq} {rec.kind} v{rec.version}")


def _check_unknown_events(store: ModelStore, f: Facts, found: Found) -> None:
    """Records in the store that the event log lacks (and that no later event superseded)."""
    if not f.events:
        records = record_entries(f.scans.values(), None)
        if records:
            found.add("catalog-empty", "catalog", f"the store holds {len(records)} event records")
        return
    for u in unknown_events(store, f.scans.values(), f.cutoff):
        found.add("unknown-event", u.ref, f"{u.record.kind} of version {u.record.version} at "
                  f"{u.record.at:%Y-%m-%d %H:%M:%S}, in pack {u.pack[:16]}…")


def _check_hashes(store: ModelStore, f: Facts, found: Found, progress: ProgressFactory) -> int:
    """Re-hash every pack; for a pack that fails, find which objects are damaged."""
    hashed = 0
    with progress_bar(progress, sum(s.size for s in f.scans.values()), "fsck: hashing packs") as bar:
        for pack, scan in sorted(f.scans.items()):
            try:
                actual = store.objects.verify_pack(scan.pack).hex
            except (ObjectNotFoundError, StoreError):
                continue
            hashed += scan.size
            bar.advance(scan.size)
            if actual == pack:
                f.intact.add(pack)
                continue
            if actual not in f.scans and (actual in f.rows_by_pack or actual in f.listed):
                found.add("pack-misplaced", pack, f"it holds the bytes of pack {actual}", payload=actual)
                continue
            referenced = pack in f.rows_by_pack
            bad = [d for d, got in read_verified(store.objects, list(scan.entries or ())).items()
                   if isinstance(got, Exception)]
            for d in bad:
                located = f.rows.get(d) is not None and f.rows[d].pack.hex == pack
                if located:
                    f.bad.add(d)
                found.add("entry-corrupt", d, f"in pack {pack[:16]}…", [d],
                          severity="" if located and d in f.live else WARNING)
            if not bad:
                found.add("pack-corrupt", pack, severity="" if referenced else WARNING)
    return hashed


def _with_affected(store: ModelStore, found: Found) -> tuple[Finding, ...]:
    digests = sorted({d for _, ds, _ in found.items for d in ds})
    with store.catalog.session() as s:
        users = users_of(s, digests)
    out = []
    for finding, ds, _ in found.items:
        names = sorted({u for d in ds for u in users.get(d, [])})
        shown = tuple(names[:_AFFECTED_SHOWN]) + ((f"+{len(names) - _AFFECTED_SHOWN} more",)
                                                   if len(names) > _AFFECTED_SHOWN else ())
        out.append(Finding(finding.code, finding.subject, finding.detail, shown, finding.repaired, finding.severity))
    return tuple(out)
