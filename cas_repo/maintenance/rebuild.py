"""rebuild-catalog: recreate the catalog from the object store alone (the objects are the truth).

Every pack's index gives the ``objects`` and ``packs`` tables; every manifest gives its
chunk list; every event record is replayed, ordered by ``(model_id, seq)``, through the
same catalog calls a live save or delete makes. For a duplicate ``(model_id, seq)`` the
record with the later ``at`` wins: a record left by an interrupted commit is superseded
by the event that took its place.

The new catalog is built beside the old one and swapped in under the catalog lock; the
old file (even a corrupt one) is moved aside, never deleted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..catalog import Catalog, EventCommit, SaveCommit, Session
from ..catalog.catalog import CATALOG_FILE
from ..catalog.checks import counts, load_index, one_transaction, recompute_new_bytes
from ..catalog.lock import CatalogLock
from ..catalog.maintenance import MARK_KINDS
from ..catalog.retention import MarkCommit, commit_marks
from ..errors import CasRepoError, IntegrityError, StoreError
from ..location import MANIFEST, RECORD, Location
from ..manifest import EventRecord, Manifest
from ..metadata import parse_ref
from ..objects import ObjectStore, open_backend
from ..sealing import StoreKey
from .common import ProgressFactory, maintenance_lock, no_progress, progress_bar, utcnow
from .scan import PackScan, list_packs, read_verified, scan_packs


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What the rebuilt catalog holds, what was set aside, and what could not be used."""

    catalog: str
    moved_aside: tuple[str, ...]
    packs: int
    objects: int
    manifests: int
    records: int
    superseded: int
    models: int
    events: int
    before: tuple[int, int] | None
    problems: tuple[str, ...]


def store_locations(root: str | os.PathLike[str], catalog: str | os.PathLike[str] | None = None) -> tuple[str, Path]:
    """(objects URL, catalog path) of a store, as :class:`~cas_repo.ModelStore` lays it out."""
    text = os.fspath(root)
    if "://" in text and not text.startswith("file://"):
        if catalog is None:
            raise StoreError(f"a remote store ({text}) needs a local catalog path (--catalog)")
        return text, Path(catalog).absolute()
    local = Path(text.removeprefix("file://"))
    if not (local / "objects").is_dir():
        raise StoreError(f"{local} holds no object store (no objects/ folder); check --repo")
    return str(local / "objects"), Path(catalog or local / CATALOG_FILE).absolute()


def rebuild_catalog(root: str | os.PathLike[str], *, catalog: str | os.PathLike[str] | None = None,
                    backend_options: dict[str, Any] | None = None, key: str | bytes | None = None,
                    progress: ProgressFactory = no_progress) -> RebuildReport:
    """Recreate the catalog of the store at ``root`` from its packs.

    With a store key (``key`` or ``CAS_REPO_KEY``), only records whose seal verifies are
    replayed: whoever can write packs must not be able to plant history (a forged purge
    would make gc free a live version's content). The others are listed as problems.
    """
    seal = StoreKey.configured(key)
    objects_url, path = store_locations(root, catalog)
    objects = ObjectStore(open_backend(objects_url, **(backend_options or {})))
    try:
        with maintenance_lock(path):
            before = _old_counts(path)
            lock = CatalogLock(path.with_name(path.name + ".lock"))
            with lock:  # writers wait for the swap; a long wait ends in their CatalogLockedError
                tmp = path.with_name(f"{path.name}.rebuild-{os.getpid()}")
                for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                    leftover.unlink(missing_ok=True)
                try:
                    built = _build(objects, tmp, seal, progress)
                    moved = _swap(path, tmp)
                finally:
                    for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), tmp.with_name(tmp.name + ".lock")):
                        leftover.unlink(missing_ok=True)
    finally:
        objects.close()
    return RebuildReport(catalog=str(path), moved_aside=moved, before=before, **built)


def _old_counts(path: Path) -> tuple[int, int] | None:
    if not path.exists():
        return None
    try:
        old = Catalog(path, exclusive=True)
    except CasRepoError:
        return None  # corrupt: it will be moved aside
    try:
        with old.session() as s:
            return counts(s)
    except CasRepoError:
        return None
    finally:
        old.close()


def _read_all(objects: ObjectStore, locs: dict[str, Location], copies: dict[str, list[Location]],
              progress: ProgressFactory, label: str) -> tuple[dict[str, bytes | memoryview], list[str]]:
    """Verified bytes of each digest, falling back to another copy when one is damaged."""
    out: dict[str, bytes | memoryview] = {}
    problems = []
    items = list(locs.items())
    with progress_bar(progress, len(items), label) as bar:
        for i in range(0, len(items), 4096):
            batch = items[i : i + 4096]
            for digest, got in read_verified(objects, [l for _, l in batch]).items():
                if isinstance(got, Exception):
                    for alt in copies[digest]:
                        again = read_verified(objects, [alt])[digest] if alt != locs[digest] else got
                        if not isinstance(again, Exception):
                            got, locs[digest] = again, alt
                            break
                if isinstance(got, Exception):
                    problems.append(f"{digest[:16]}… is damaged in every copy ({str(got).split('; ')[0]})")
                else:
                    out[digest] = got
            bar.advance(len(batch))
    return out, problems


def _build(objects: ObjectStore, tmp: Path, seal: StoreKey | None, progress: ProgressFactory) -> dict[str, Any]:
    scans = scan_packs(objects, list_packs(objects), progress=progress, label="rebuild: reading pack indexes")
    problems = [f"pack {sc.pack.hex[:16]}… cannot be read: {sc.error}" for sc in scans.values() if not sc.readable]
    readable: list[PackScan] = sorted((sc for sc in scans.values() if sc.readable), key=lambda sc: (sc.mtime, sc.pack))
    locs: dict[str, Location] = {}
    copies: dict[str, list[Location]] = {}
    for sc in readable:  # the oldest copy first, as the first save to store it recorded
        for loc in sc.entries or ():
            locs.setdefault(loc.digest.hex, loc)
            copies.setdefault(loc.digest.hex, []).append(loc)
    wanted = {d: l for d, l in locs.items() if l.kind in (MANIFEST, RECORD)}
    data, bad = _read_all(objects, wanted, copies, progress, "rebuild: reading manifests and records")
    locs.update(wanted)
    problems += bad
    manifests: dict[str, list[tuple[str, int]]] = {}
    sizes: dict[str, int] = {}
    records: list[tuple[EventRecord, str]] = []
    for digest, raw in data.items():
        try:
            if locs[digest].kind == MANIFEST:
                m = Manifest.from_bytes(raw)
                manifests[digest] = [(c.digest.hex, c.size) for c in m.chunks()]
                sizes[digest] = m.size
            else:
                if seal is not None:
                    try:
                        seal.check(raw)
                    except IntegrityError as exc:
                        problems.append(f"record {digest[:16]}… not replayed: {exc.args[0].split('; ')[0]}")
                        continue
                records.append((EventRecord.from_bytes(raw), digest))
        except IntegrityError as exc:
            problems.append(f"{digest[:16]}… is not a valid manifest or record ({exc.args[0].split('; ')[0]})")
    winners: dict[tuple[str, int], tuple[EventRecord, str]] = {}
    for rec, digest in records:
        key = (rec.model_id, rec.seq)
        if key not in winners or (rec.at, digest) > (winners[key][0].at, winners[key][1]):
            winners[key] = (rec, digest)
    cat = Catalog(tmp, exclusive=True)
    try:
        with cat.session() as s:
            load_index(s, [(sc.pack.hex, sc.size, len(sc.entries or ()), sc.mtime) for sc in readable],
                       list(locs.values()), manifests)
            problems += _replay(s, [winners[k] for k in sorted(winners)], sizes, progress)
            recompute_new_bytes(s)
            models, events = counts(s)
            s.con.execute("CHECKPOINT")
    finally:
        cat.close()
    return {"packs": len(readable), "objects": len(locs), "manifests": len(manifests), "records": len(records),
            "superseded": len(records) - len(winners), "models": models, "events": events,
            "problems": tuple(problems)}


def _replay(s: Session, records: list[tuple[EventRecord, str]], sizes: dict[str, int],
            progress: ProgressFactory) -> list[str]:
    """Replay the winning records, in order, through the catalog's own commit calls."""
    problems = []
    deleted: dict[str, bool] = {}
    versions: set[tuple[str, int]] = set()
    purged = {(r.model_id, r.version) for r, _ in records if r.kind == "purge"}
    marks: list[MarkCommit] = []  # consecutive retention events go in one statement
    with progress_bar(progress, len(records), "rebuild: replaying events") as bar, \
            one_transaction(s, "replaying the event records") as tx:
        for rec, digest in records:
            bar.advance()
            try:
                commit = _commit_of(rec, digest, sizes, deleted)
            except (KeyError, ValueError, TypeError, CasRepoError) as exc:
                problems.append(f"{rec.model_id}#{rec.seq} ({rec.kind}) could not be replayed: {exc!r}")
                continue
            if isinstance(commit, MarkCommit):
                marks.append(commit)
                continue
            if marks:
                commit_marks(tx, marks, (), (), marks[-1].at)
                marks = []
            if isinstance(commit, SaveCommit):
                if (rec.model_id, rec.version) in versions:
                    problems.append(f"{rec.model_id}#{rec.seq}: a second record for version {rec.version}, skipped")
                    continue
                versions.add((rec.model_id, rec.version))
                if commit.manifest not in sizes and (rec.model_id, rec.version) not in purged:
                    problems.append(f"{rec.model_id}@{rec.version}: its manifest is missing from the store")
                tx.commit_save(commit)
            else:
                tx.commit_event(commit)
        if marks:
            commit_marks(tx, marks, (), (), marks[-1].at)
    return problems


def _commit_of(rec: EventRecord, digest: str, sizes: dict[str, int],
               deleted: dict[str, bool]) -> SaveCommit | EventCommit | MarkCommit:
    if rec.kind in ("save", "rollback"):
        deleted[rec.model_id] = False
        return _save_commit(rec, digest, sizes.get(rec.manifest.hex if rec.manifest else "", 0))
    if rec.kind in MARK_KINDS:
        meta = rec.metadata
        return MarkCommit(rec.model_id, rec.seq, rec.kind, rec.version, rec.at, digest,
                          meta.get("logical_size"), meta.get("new_bytes"))
    if rec.kind != "tag":
        deleted[rec.model_id] = rec.kind == "delete"
    return EventCommit(rec.model_id, rec.seq, rec.kind, rec.version, rec.at, digest,
                       deleted.get(rec.model_id, False), dict(rec.tags))


def _save_commit(rec: EventRecord, digest: str, logical_size: int) -> SaveCommit:
    meta = rec.metadata
    return SaveCommit(
        model_id=rec.model_id, version=rec.version, seq=rec.seq, kind=rec.kind, rollback_of=rec.rollback_of,
        manifest=rec.manifest.hex if rec.manifest else "", record=digest, at=rec.at,
        created_at=datetime.fromisoformat(meta["created_at"]), experiment_name=meta["experiment_name"],
        model_type=meta["model_type"], qlib_recorder_id=meta.get("qlib_recorder_id"), metrics=meta["metrics"],
        hyperparameters=meta["hyperparameters"], lineage=meta.get("lineage", {}),
        metadata_json=json.dumps(meta, sort_keys=True), logical_size=logical_size, new_bytes=0,
        tags=dict(meta.get("tags", {})), parents=tuple(parse_ref(p) for p in rec.parents))


def _swap(path: Path, tmp: Path) -> tuple[str, ...]:
    """Move the old catalog (and its WAL) aside and the new one into place."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    moved = []
    for suffix in ("", ".wal"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            aside = path.with_name(f"{path.name}.before-rebuild-{stamp}{suffix}")
            os.replace(old, aside)
            moved.append(str(aside))
    os.replace(tmp, path)
    wal = tmp.with_name(tmp.name + ".wal")
    if wal.exists():
        os.replace(wal, path.with_name(path.name + ".wal"))
    return tuple(moved)
