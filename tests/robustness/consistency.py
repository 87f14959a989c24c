"""A self-contained consistency check of a local store, for the robustness tests.

Independent of the maintenance tooling on purpose: it states what "consistent" means
after a crash or a fault, for the design where the log is the truth:

* the log's commits are contiguous (1..n, nothing listed past a gap), each readable, and
  a fold of them from scratch admits every operation (no refused ones);
* every version of that fold finds its manifest and every chunk the manifest lists in a
  pack on disk whose own index agrees on digest, kind, offset, sizes and codec; versions
  are 1..n with no gap, event numbers likewise;
* the store's catalog index, caught up, holds exactly the rows a catalog folded from
  scratch holds (the derived index equals a rebuild);
* with ``full=True``, every located entry is read back and re-hashed, every pack
  re-hashes to its name, and every manifest lists what the index says.

Packs that no commit mentions and leftover temp files are *orphans*: the expected
debris of an interrupted save, reported separately and never counted as problems.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
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

# The catalog tables a rebuild must reproduce row for row (log_index aside).
TABLES = ("models", "versions", "lineage", "tags", "events", "event_tags", "objects", "manifest_chunks", "packs")


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


def fold_from_scratch(objects: ObjectStore) -> tuple[StoreState, list[str]]:
    """The log folded from position 0, ignoring checkpoints, and what is wrong with the log."""
    problems: list[str] = []
    log = Log(objects.backend)
    st = StoreState()
    try:
        for position, commit in log.after(0):
            st.apply(position, commit.ops)
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


def _table_rows(store: ModelStore) -> dict[str, list[tuple]]:
    with store.catalog.session() as s:
        return {t: sorted(s.con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def check_store(root: str | Path, *, full: bool = False) -> StoreCheck:
    """Check the local store at ``root``."""
    root = Path(root)
    objects = ObjectStore(LocalBackend(root / "objects", fsync=False))
    st, problems = fold_from_scratch(objects)
    on_disk = {d.hex: info for d, info in objects.list_packs()}
    indexes: dict[str, dict[str, object]] = {}
    for pack in {l.pack.hex for l in st.entries.values()}:
        if pack not in on_disk:
            problems.append(f"pack {pack[:16]} holds live entries but is not on disk")
            continue
        try:
            indexes[pack] = {l.digest.hex: l for l in objects.pack_index(Digest.from_hex(pack))}
        except CasRepoError as exc:
            problems.append(f"pack {pack[:16]} has an unreadable index: {exc}")
    for digest, loc in st.entries.items():
        entry = indexes.get(loc.pack.hex, {}).get(digest)
        if loc.pack.hex in indexes and entry != loc:
            problems.append(f"entry {digest[:16]}: the index of its pack says {entry}, the log {loc}")

    manifests: dict[str, Manifest] = {}
    versions = 0
    for model_id, e in st.models.items():
        if [v for v in range(1, e.head_version + 1)] != list(range(1, len(e.versions) + 1)):
            problems.append(f"{model_id}: versions are not 1..n")
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

    with ModelStore(root) as store:
        live = _table_rows(store)
    with tempfile.TemporaryDirectory() as tmp, ModelStore(root, catalog=Path(tmp) / "rebuilt.duckdb") as fresh:
        rebuilt = _table_rows(fresh)
    for t in TABLES:
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
    return StoreCheck(tuple(problems), orphans, temps, versions, len(st.entries))
