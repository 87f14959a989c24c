"""fsck: is the log whole, does the index agree with it, and do the packs hold what it says?

First the log (:mod:`.logcheck`): every commit is read, checked and folded from scratch
into a temporary catalog, and the store's catalog index is compared with that fold.
Then the packs, against the fold: quick mode reads every pack's index and every
manifest (all small); ``full`` also re-hashes every byte of every pack. Nothing changes
unless ``repair`` is set (see :mod:`.repair`), and a repair never deletes anything.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..catalog import Catalog
from ..catalog.checks import all_locations, counts, manifest_chunk_lists, stored_manifests, users_of
from ..catalog.maintenance import catalog_packs, live_digests, unlocated_live
from ..digest import Digest
from ..errors import IntegrityError, MaintenanceError, ObjectNotFoundError, StoreError
from ..location import Location
from ..manifest import Manifest
from ..objects.backend import ObjectBackend
from ..objects.keys import checkpoint_key, log_key, pack_key
from ..repository import ModelStore
from .common import DEFAULT_GRACE, ProgressFactory, maintenance_lock, no_progress, progress_bar, utcnow
from .facts import Facts
from .findings import WARNING, Finding, Found, FsckReport
from .logcheck import LogFacts, check_log, compare_index, fresh_catalog
from .orphans import classify
from .repair import repair_findings
from .scan import list_packs, read_verified, scan_packs

_AFFECTED_SHOWN = 10


def fsck(store: ModelStore, *, full: bool = False, repair: bool = False, grace: timedelta = DEFAULT_GRACE,
         now: datetime | None = None, progress: ProgressFactory = no_progress) -> FsckReport:
    """Check the store; with ``repair``, fix what can be fixed without losing anything."""
    cutoff = (now or utcnow()) - grace
    with maintenance_lock(store.catalog.path), fresh_catalog(store) as fresh:
        found = Found()
        log = check_log(store, fresh, found, progress)
        compare_index(store, fresh, log, found)
        facts = gather(store, fresh, log, cutoff, progress)
        _check_packs(facts, found)
        _check_rows(facts, found)
        with fresh.session() as s:
            for d in unlocated_live(s):
                found.add("unlocated", d, digests=[d])
        _check_manifests(store, facts, found, progress)
        for info in store.objects.backend.list_incomplete():
            if info.mtime <= cutoff:
                found.add("temp-file", info.key, f"{info.size} bytes, written {info.mtime:%Y-%m-%d %H:%M} UTC",
                          payload=info)
        hashed = _check_hashes(store, facts, found, progress) if full else 0
        if repair:

            repair_findings(store, facts, found)
        findings = _with_affected(fresh, found)
    return FsckReport(full=full, repair=repair, commits=log.commits, packs=len(facts.scans),
                      pack_bytes=sum(s.size for s in facts.scans.values()), objects=len(facts.rows),
                      events=facts.events, hashed_bytes=hashed, in_flight=facts.in_flight, findings=findings)


def fsck_store(root: str | os.PathLike[str], *, catalog: str | os.PathLike[str] | None = None,
               repair_from: str | os.PathLike[str] | None = None, **options: Any) -> FsckReport:
    """fsck of the store at ``root`` (``catalog``: its index, default the per-user one);
    with ``repair_from``, restore from that copy of the store first (:func:`fsck_from`)."""
    with ModelStore(root, catalog=catalog) as store:
        if repair_from is None:
            return fsck(store, **options)
        source = open_copy(repair_from)
        try:
            return fsck_from(store, source, **options)
        finally:
            source.close()


def open_copy(location: str | os.PathLike[str]) -> ObjectBackend:
    """The object store of a copy of a store, read-only in use (nothing is created there)."""
    from ..objects import open_backend

    text = os.fspath(location)
    if text.startswith("s3://"):
        return open_backend(text)
    objects = Path(text.removeprefix("file://")) / "objects"
    if not (objects / "log").is_dir():
        raise MaintenanceError(f"{text} holds no store (no objects/log folder): give the folder or s3:// URL of "
                               "a copy or mirror of this store")
    return open_backend(objects)


def fsck_from(store: ModelStore, source: ObjectBackend, **options: Any) -> FsckReport:
    """Restore from ``source`` (a copy or mirror of the store) what is damaged or missing
    here and verifies there (:mod:`.restore`), then fsck; findings that are gone are
    reported as repaired.

    The log first (every later check folds it), then checkpoints, then the packs the
    fsck of the restored log finds missing or damaged.
    """
    from .restore import Restored, damaged_packs, restore_checkpoints, restore_log, restore_packs, stamp

    check = {k: v for k, v in options.items() if k != "repair"}
    done, when = Restored(), stamp()
    before = fsck(store, **check)
    seen = list(before.findings)
    restore_log(store, source, done, when)
    middle = fsck(store, **check) if done.commits else before
    seen += middle.findings
    restore_checkpoints(store, source, middle, done, when)
    if any(f.code.startswith("log-") for f in middle.errors):
        packs: set[str] = set()  # the packs cannot be checked against a log that does not fold
    else:
        packs = damaged_packs(store, middle)
    restore_packs(store, source, packs, done, when)
    after = fsck(store, **options)
    left = {(f.code, f.subject) for f in after.findings}
    fixed, shown = [], set()
    for f in seen:
        if (f.code, f.subject) not in left and (f.code, f.subject) not in shown:
            shown.add((f.code, f.subject))
            fixed.append(replace(f, repaired=True))
    keys = ([log_key(p) for p in done.commits] + [checkpoint_key(p) for p in done.checkpoints]
            + [pack_key(Digest.from_hex(p)) for p in done.packs])
    return replace(after, repair=True, findings=tuple(fixed) + after.findings, restored=tuple(keys),
                   unrestored=tuple(done.failed), set_aside=tuple(done.set_aside))


def gather(store: ModelStore, fresh: Catalog, log: LogFacts, cutoff: datetime, progress: ProgressFactory) -> Facts:
    with fresh.session() as s:
        locs = all_locations(s)
        listed = catalog_packs(s)
        live = live_digests(s)
        manifests = stored_manifests(s)
        chunk_lists = manifest_chunk_lists(s, list(manifests))
        _, events = counts(s)
    by_pack: dict[str, list[Location]] = {}
    for loc in locs:
        by_pack.setdefault(loc.pack.hex, []).append(loc)
    listing = list_packs(store.objects)
    disk = classify(listing, set(listed) | set(by_pack), log.state.forgotten)
    scans = {d.hex: sc for d, sc in scan_packs(store.objects, listing, progress=progress,
                                               label="fsck: reading pack indexes").items()}
    return Facts(log, fresh, {l.digest.hex: l for l in locs}, by_pack, listed, live, manifests, chunk_lists, disk,
                 scans, cutoff, events)


def _check_packs(f: Facts, found: Found) -> None:
    for pack in sorted(set(f.rows_by_pack) | set(f.listed)):
        rows = f.rows_by_pack.get(pack, [])
        live = [l.digest.hex for l in rows if l.digest.hex in f.live]
        scan = f.scans.get(pack)
        if scan is None:
            f.bad.update(l.digest.hex for l in rows)
            if live:
                found.add("pack-missing", pack, f"{len(rows)} entries, {len(live)} of them live", live)
            else:
                found.add("stale-pack", pack)
            continue
        if not scan.readable and rows:
            f.bad.update(l.digest.hex for l in rows)
            found.add("pack-damaged", pack, scan.error or "", live)
        if pack in f.listed and f.listed[pack] != scan.size:
            found.add("pack-size", pack, f"the file is {scan.size} bytes, {f.listed[pack]} were written",
                      live, payload=scan.size)
    for pack, (_, info) in sorted(f.disk.leftovers.items()):
        found.add("forgotten-pack", pack, f"{info.size} bytes")
    for pack, (_, info) in sorted(f.disk.orphans.items()):
        scan = f.scans.get(pack)
        if info.mtime > f.cutoff:
            f.in_flight += 1  # a save may be about to commit it
        else:
            found.add("orphan-pack", pack, f"{info.size} bytes, written {info.mtime:%Y-%m-%d %H:%M} UTC"
                      + ("" if scan is None or scan.readable else f"; unreadable: {scan.error}"))


def _check_rows(f: Facts, found: Found) -> None:
    for pack, rows in sorted(f.rows_by_pack.items()):
        scan = f.scans.get(pack)
        if scan is None or not scan.readable:
            continue
        index = {l.digest.hex: l for l in scan.entries or ()}
        wrong = [r.digest.hex for r in rows if index.get(r.digest.hex) != r]
        if wrong:
            f.bad.update(wrong)
            live = [d for d in wrong if d in f.live]
            found.add("row-mismatch", pack, f"{len(wrong)} locations do not match the pack's index", live or wrong,
                      severity="" if live else WARNING)


def _check_manifests(store: ModelStore, f: Facts, found: Found, progress: ProgressFactory) -> None:
    """Read every stored manifest and compare it with the chunk list and size the log records."""
    wanted = [d for d in f.manifests if d in f.rows and d not in f.bad]
    data: dict[str, Any] = {}
    with progress_bar(progress, len(wanted), "fsck: reading manifests") as bar:
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
                      f"the log has {len(f.chunk_lists.get(digest) or [])} chunks, sizes {sorted(sizes)}", [digest])


def _check_hashes(store: ModelStore, f: Facts, found: Found, progress: ProgressFactory) -> int:
    """Re-hash every pack; for a pack that fails, find which entries are damaged."""
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
                found.add("entry-corrupt", d, f"in pack {pack[:16]}…", [d], payload=pack,
                          severity="" if located and d in f.live else WARNING)
            if not bad:
                found.add("pack-corrupt", pack, severity="" if referenced else WARNING)
    return hashed


def _with_affected(fresh: Catalog, found: Found) -> tuple[Finding, ...]:
    digests = sorted({d for _, ds, _ in found.items for d in ds})
    with fresh.session() as s:
        users = users_of(s, digests)
    out = []
    for finding, ds, _ in found.items:
        names = sorted({u for d in ds for u in users.get(d, [])})
        shown = tuple(names[:_AFFECTED_SHOWN]) + ((f"+{len(names) - _AFFECTED_SHOWN} more",)
                                                   if len(names) > _AFFECTED_SHOWN else ())
        out.append(Finding(finding.code, finding.subject, finding.detail, shown, finding.repaired, finding.severity))
    return tuple(out)
