"""A self-contained consistency check of a local store, for the robustness tests.

Independent of any maintenance tooling on purpose: it states, in a few queries, what
"consistent" means after a crash or a fault:

* every catalog row that names an object finds it in a pack on disk whose own index
  agrees on digest, kind, offset, sizes and codec;
* every version's manifest and record, every event's record and every manifest chunk
  is such an object; heads, versions and event sequences agree and have no gaps;
* with ``full=True``, every object is read back and re-hashed, every pack re-hashes to
  its name, and every manifest and record says what the catalog says.

Packs that no catalog row mentions and leftover temp files are *orphans*: the expected
debris of an interrupted save, reported separately and never counted as problems.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from cas_repo.catalog import Catalog
from cas_repo.catalog.catalog import CATALOG_FILE
from cas_repo.digest import Digest
from cas_repo.errors import CasRepoError
from cas_repo.location import CHUNK, MANIFEST, RECORD, Location
from cas_repo.manifest import EventRecord, Manifest
from cas_repo.objects import LocalBackend, ObjectStore


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What :func:`check_store` found."""

    problems: tuple[str, ...]
    orphan_packs: tuple[str, ...]
    temp_files: tuple[str, ...]
    versions: int
    objects: int

    @property
    def clean(self) -> bool:
        return not self.problems


def _rows(session, sql: str) -> list[tuple]:
    return session.con.execute(sql).fetchall()


def check_store(root: str | Path, *, full: bool = False) -> StoreCheck:
    """Check the store at ``root`` (a local store with its catalog inside)."""
    root = Path(root)
    problems: list[str] = []
    catalog = Catalog(root / CATALOG_FILE, lock_timeout=30)
    objects = ObjectStore(LocalBackend(root / "objects", fsync=False))
    with catalog.session() as s:
        obj_rows = _rows(s, 'SELECT digest, kind, pack, "offset", stored_size, size, codec FROM objects')
        pack_rows = _rows(s, "SELECT pack, size, entries FROM packs")
        versions = _rows(s, "SELECT model_id, version, manifest, record, kind FROM versions")
        events = _rows(s, "SELECT model_id, seq, kind, version, record FROM events")
        models = _rows(s, "SELECT model_id, head_version, last_seq FROM models")
        mchunks = _rows(s, "SELECT manifest, seq, chunk, size FROM manifest_chunks ORDER BY manifest, seq")
    catalog.close()

    locs = {r[0]: Location(Digest.from_hex(r[0]), r[1], Digest.from_hex(r[2]), r[3], r[4], r[5], r[6])
            for r in obj_rows}
    known_packs = {r[0]: (r[1], r[2]) for r in pack_rows}
    on_disk = {d.hex: info for d, info in objects.list_packs()}

    indexes: dict[str, dict[str, Location]] = {}
    for pack, (size, entries) in known_packs.items():
        info = on_disk.get(pack)
        if info is None:
            problems.append(f"pack {pack[:16]} is in the catalog but not on disk")
            continue
        if info.size != size:
            problems.append(f"pack {pack[:16]} has {info.size} bytes, the catalog says {size}")
        try:
            index = objects.pack_index(Digest.from_hex(pack))
        except CasRepoError as exc:
            problems.append(f"pack {pack[:16]} has an unreadable index: {exc}")
            continue
        if len(index) != entries:
            problems.append(f"pack {pack[:16]} indexes {len(index)} entries, the catalog says {entries}")
        indexes[pack] = {l.digest.hex: l for l in index}

    for digest, loc in locs.items():
        if loc.pack.hex not in known_packs:
            problems.append(f"object {digest[:16]} lives in pack {loc.pack.hex[:16]} unknown to the catalog")
            continue
        entry = indexes.get(loc.pack.hex, {}).get(digest)
        if loc.pack.hex in indexes and entry != loc:
            problems.append(f"object {digest[:16]}: the index of its pack says {entry}, the catalog {loc}")

    def need(digest: str, kind: int, what: str) -> None:
        loc = locs.get(digest)
        if loc is None:
            problems.append(f"{what} names object {digest[:16]}, which the catalog does not locate")
        elif loc.kind != kind:
            problems.append(f"{what} names object {digest[:16]} of kind {loc.kind}, expected {kind}")

    chunk_lists: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for manifest, _seq, chunk, size in mchunks:
        chunk_lists[manifest].append((chunk, size))
        need(chunk, CHUNK, f"manifest {manifest[:16]}")
    by_model: dict[str, list[int]] = defaultdict(list)
    for model_id, version, manifest, record, _kind in versions:
        by_model[model_id].append(version)
        need(manifest, MANIFEST, f"{model_id}@{version}")
        need(record, RECORD, f"{model_id}@{version}")
        if manifest not in chunk_lists:
            problems.append(f"{model_id}@{version}: manifest {manifest[:16]} has no chunk rows")
    seqs: dict[str, list[int]] = defaultdict(list)
    for model_id, seq, _kind, _version, record in events:
        seqs[model_id].append(seq)
        need(record, RECORD, f"event {model_id}#{seq}")
    for model_id, head, last_seq in models:
        vs = sorted(by_model.get(model_id, []))
        if vs != list(range(1, len(vs) + 1)) or not vs or head != vs[-1]:
            problems.append(f"{model_id}: head {head} but versions {vs[:5]}…{vs[-5:]}")
        ss = sorted(seqs.get(model_id, []))
        if ss != list(range(1, len(ss) + 1)) or not ss or last_seq != ss[-1]:
            problems.append(f"{model_id}: last_seq {last_seq} but events {ss[:5]}…{ss[-5:]}")
    if set(by_model) - {m[0] for m in models}:
        problems.append(f"versions of unknown models: {sorted(set(by_model) - {m[0] for m in models})}")

    if full:
        problems += _full_check(objects, locs, known_packs, on_disk, chunk_lists, versions, events)

    orphans = tuple(sorted(set(on_disk) - set(known_packs)))
    temps = tuple(sorted(i.key for i in objects.backend.list_incomplete()))
    objects.close()
    return StoreCheck(tuple(problems), orphans, temps, len(versions), len(locs))


def _full_check(objects, locs, known_packs, on_disk, chunk_lists, versions, events) -> list[str]:
    problems = []
    for pack in known_packs:
        if pack in on_disk and objects.verify_pack(Digest.from_hex(pack)).hex != pack:
            problems.append(f"pack {pack[:16]} does not hash to its name")
    data: dict[str, bytes] = {}
    for digest, loc in locs.items():
        try:
            blob = objects.read(loc)
        except CasRepoError as exc:
            problems.append(f"object {digest[:16]} does not read back: {exc}")
            continue
        if loc.kind != CHUNK:
            data[digest] = bytes(blob)
    for manifest, chunks in chunk_lists.items():
        if manifest in data:
            listed = [(c.digest.hex, c.size) for c in Manifest.from_bytes(data[manifest]).chunks()]
            if listed != chunks:
                problems.append(f"manifest {manifest[:16]} lists other chunks than the catalog")
    for model_id, version, manifest, record, kind in versions:
        if record in data:
            rec = EventRecord.from_bytes(data[record])
            if (rec.model_id, rec.version, rec.kind, rec.manifest.hex if rec.manifest else None) != (
                    model_id, version, kind, manifest):
                problems.append(f"{model_id}@{version}: its record says {rec.model_id}@{rec.version}")
    for model_id, seq, kind, version, record in events:
        if record in data:
            rec = EventRecord.from_bytes(data[record])
            if (rec.model_id, rec.seq, rec.kind, rec.version) != (model_id, seq, kind, version):
                problems.append(f"event {model_id}#{seq}: its record says {rec.model_id}#{rec.seq}")
    return problems
