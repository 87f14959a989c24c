"""A self-contained consistency check of a local store, for the robustness tests.

Independent of the maintenance tooling on purpose: it states what "consistent" means
after a crash or a fault, for the design where the log is the truth:

* the log's commits are contiguous (1..n, nothing listed past a gap), each readable, and
  a fold of them from scratch admits every operation (no refused ones);
* every version of that fold finds its manifest and every chunk the manifest lists in a
  pack on disk whose own index agrees on digest, kind, offset, sizes and codec; versions
  are 1..n with no gap, event numbers likewise;
* a store opened as a new process opens it (from its newest checkpoint, then the
  commits after it) holds the same state as that fold;
* the store's catalog index, caught up, holds exactly the rows a catalog folded from
  scratch holds (the derived index equals a rebuild), and says what the fold says —
  position, heads, every version's manifest, every entry's location — so a fault shared
  by the index's own fold code and the rebuild (same code) still shows;
* with ``full=True``, every located entry is read back and re-hashed, every pack
  re-hashes to its name, and every manifest lists what the index says.

Packs that no commit mentions and leftover temp files are *orphans*: the expected
debris of an interrupted save, reported separately and never counted as problems.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cas_repo import ModelStore
from cas_repo.digest import Digest
from cas_repo.errors import CasRepoError
from cas_repo.location import CHUNK, MANIFEST
from cas_repo.log.log import Log
from cas_repo.log.state import StoreState
from cas_repo.manifest import Manifest
from cas_repo.objects import LocalBackend, ObjectStore
from cas_repo.objects.keys import parse_log_key
from cas_repo.sealing import StoreKey

# The catalog tables a rebuild must reproduce row for row (log_index aside).
TABLES = ("models", "versions", "lineage", "tags", "events", "event_tags", "objects", "manifest_chunks", "packs",
          "commits", "metric_log")


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What :func:`check_store` found (``state``: the log folded from scratch)."""

    problems: tuple[str, ...]
    orphan_packs: tuple[str, ...]
    temp_files: tuple[str, ...]
    versions: int
    objects: int
    state: StoreState | None = field(default=None, repr=False, compare=False)

    @property
    def clean(self) -> bool:
        return not self.problems


@dataclass
class CheckCache:
    """What repeated checks of one store may reuse: pack indexes and manifests, by name.

    Packs and manifests are immutable and named by their content, so reading them once is
    enough for the per-round checks of a long test; whether each pack is still on disk is
    checked every time, and ``full=True`` re-reads, re-hashes and refolds everything.
    """

    packs: dict[str, dict[str, object]] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    state: StoreState | None = None  # the fold so far: the log only grows, later calls continue it


def fold_from_scratch(objects: ObjectStore, key: str | None = None,
                      st: StoreState | None = None) -> tuple[StoreState, list[str]]:
    """The log folded from position 0, ignoring checkpoints, and what is wrong with the log
    (with ``key``: every commit's seal is checked too). Given ``st``, a fold of this log's
    first commits made by an earlier call, folding continues from there instead."""
    problems: list[str] = []
    log = Log(objects.backend, StoreKey.from_secret(key) if key else None)
    st = st if st is not None else StoreState()
    try:
        for position, commit, chain in log.after(st.position, st.chain):
            st.apply(position, commit.ops, chain or "")
    except CasRepoError as exc:
        problems.append(f"the log cannot be read past commit {st.position}: {exc}")
    listed = sorted(p for p in (parse_log_key(i.key) for i in objects.backend.list("log/")) if p)
    if listed != list(range(1, len(listed) + 1)):
        problems.append(f"log positions are not contiguous: {listed[:10]}…")
    elif len(listed) != st.position:
        problems.append(f"{len(listed)} commits listed, {st.position} folded")
    if st.refused:
        problems.append(f"operations refused by the fold: {st.refused[:10]}")
    return st, problems


# What the comparison with the fold reads; a comparison with a rebuild reads every table.
_FOLD_TABLES = ("log_index", "models", "versions", "events", "objects")


def _table_rows(store: ModelStore, tables: tuple[str, ...] = (*TABLES, "log_index")) -> dict[str, list[tuple]]:
    with store.catalog.session() as s:
        return {t: sorted(s.con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def _state_against_fold(opened: StoreState, st: StoreState) -> list[str]:
    """Where the state a store opens with (a checkpoint plus the commits after it) differs
    from the log folded from scratch."""
    def summary(x: StoreState):
        return (x.position,
                {m: (e.seq, e.deleted, e.head_row.manifest, [(v.manifest, v.position, v.tags, v.mark, v.logged)
                                                             for v in e.versions]) for m, e in x.models.items()},
                x.entries, x.forgotten)

    if summary(opened) != summary(st):
        return [f"a store opened at commit {opened.position} (from a checkpoint or the log) holds another "
                f"state than the log folded from scratch (commit {st.position})"]
    return []


def _index_against_fold(live: dict[str, list[tuple]], st: StoreState) -> list[str]:
    """Where a caught-up catalog index disagrees with the log's fold (column order: 0001_init.sql)."""
    problems = []
    position = [r[2] for r in live["log_index"]]
    if position != ([st.position] if st.position else []):
        problems.append(f"the index says it folded up to commit {position}, the log has {st.position}")
    heads = sorted((r[0], r[3], r[4], r[5]) for r in live["models"])
    if heads != sorted((m, e.head_version, e.seq, e.deleted) for m, e in st.models.items()):
        problems.append(f"the index's heads differ from the log's: {heads[:5]}")
    versions = sorted((r[0], r[1], r[2]) for r in live["versions"])
    if versions != sorted((m, n, ref.manifest) for m, e in st.models.items() for n, ref in enumerate(e.versions, 1)):
        problems.append("the index's versions (model, number, manifest) differ from the log's")
    seqs: dict[str, list[int]] = {}
    for r in sorted(live["events"], key=lambda r: (r[0], r[1])):
        seqs.setdefault(r[0], []).append(r[1])
    if any(s != list(range(1, len(s) + 1)) for s in seqs.values()):
        problems.append("the index's event numbers of a model are not 1..n")
    objects = sorted((r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in live["objects"])
    if objects != sorted((d, l.kind, l.pack.hex, l.offset, l.stored_size, l.size, l.codec)
                         for d, l in st.entries.items()):
        problems.append("the index's object locations differ from the log's")
    return problems


def check_store(root: str | Path, *, full: bool = False, rebuild: bool = True,
                cache: CheckCache | None = None, key: str | None = None) -> StoreCheck:
    """Check the local store at ``root``.

    Args:
        full: also re-read and re-hash every pack and entry.
        rebuild: also compare the index with one folded from scratch in a temp folder
            (the comparison with the log's fold is always made).
        cache: pack indexes and manifests already read by an earlier check of this store.
        key: the store's key, if it is keyed (the store is then opened with it).
    """
    root = Path(root)
    cache = cache if cache is not None and not full else CheckCache()
    objects = ObjectStore(LocalBackend(root / "objects", fsync=False))
    st, problems = fold_from_scratch(objects, key, cache.state)
    cache.state = st
    on_disk = {d.hex: info for d, info in objects.list_packs()}
    indexes: dict[str, dict[str, object]] = {}
    for pack in {l.pack.hex for l in st.entries.values()}:
        if pack not in on_disk:
            problems.append(f"pack {pack[:16]} holds live entries but is not on disk")
            continue
        try:
            if pack not in cache.packs:
                cache.packs[pack] = {l.digest.hex: l for l in objects.pack_index(Digest.from_hex(pack))}
            indexes[pack] = cache.packs[pack]
        except CasRepoError as exc:
            problems.append(f"pack {pack[:16]} has an unreadable index: {exc}")
    for digest, loc in st.entries.items():
        entry = indexes.get(loc.pack.hex, {}).get(digest)
        if loc.pack.hex in indexes and entry != loc:
            problems.append(f"entry {digest[:16]}: the index of its pack says {entry}, the log {loc}")

    manifests = cache.manifests
    versions = 0
    for model_id, e in st.models.items():
        # The fold admits version n + 1 only after n (refused operations are reported
        # above), so the versions it holds are 1..n by construction; the index's are
        # checked against them below.
        for number, ref in enumerate(e.versions, 1):
            versions += 1
            if ref.mark == "purge":
                continue
            loc = st.entries.get(ref.manifest)
            if loc is None or loc.kind != MANIFEST:
                problems.append(f"{model_id}@{number}: manifest {ref.manifest[:16]} is not located")
                continue
            if ref.manifest not in manifests:
                try:
                    manifests[ref.manifest] = Manifest.from_bytes(objects.read(loc))
                except CasRepoError as exc:
                    problems.append(f"{model_id}@{number}: manifest does not read back: {exc}")
                    continue
            for c in manifests[ref.manifest].chunks():
                cl = st.entries.get(c.digest.hex)
                if cl is None or cl.kind != CHUNK:
                    problems.append(f"{model_id}@{number}: chunk {c.digest.hex[:16]} is not located")

    with ModelStore(root, key=key) as store:
        live = _table_rows(store, (*TABLES, "log_index") if rebuild or full else _FOLD_TABLES)
        with store.ledger.current() as opened:  # as a new process starts: from a checkpoint, if any
            problems += _state_against_fold(opened, st)
    problems += _index_against_fold(live, st)
    rebuilt = live
    if rebuild:
        with tempfile.TemporaryDirectory() as tmp, ModelStore(root, catalog=Path(tmp) / "rebuilt.duckdb",
                                                              key=key) as fresh:
            rebuilt = _table_rows(fresh)
    for t in TABLES if rebuild else ():
        if live[t] != rebuilt[t]:
            extra = [r for r in live[t] if r not in rebuilt[t]][:2]
            lacking = [r for r in rebuilt[t] if r not in live[t]][:2]
            problems.append(f"catalog table {t} differs from a rebuild: extra {extra}, lacking {lacking}")

    if full:
        for pack in indexes:
            if objects.verify_pack(Digest.from_hex(pack)).hex != pack:
                problems.append(f"pack {pack[:16]} does not hash to its name")
        for digest, loc in st.entries.items():
            try:
                objects.read(loc)
            except CasRepoError as exc:
                problems.append(f"entry {digest[:16]} does not read back: {exc}")
        chunks = {}
        for m, _, c, n in live["manifest_chunks"]:
            chunks.setdefault(m, []).append((c, n))
        for m, manifest in manifests.items():
            listed = sorted((c.digest.hex, c.size) for c in manifest.chunks())
            if sorted(chunks.get(m, [])) != listed:
                problems.append(f"manifest {m[:16]} lists other chunks than the catalog index")

    referenced = {l.pack.hex for l in st.entries.values()} | st.forgotten
    orphans = tuple(sorted(set(on_disk) - referenced))
    temps = tuple(sorted(i.key for i in objects.backend.list_incomplete()))
    objects.close()
    return StoreCheck(tuple(problems), orphans, temps, versions, len(st.entries), st)
