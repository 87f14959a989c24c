"""The catalog side of fsck and rebuild-catalog: what the catalog claims, and its repairs."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator, Sequence

import duckdb

from ..location import Location
from .catalog import Session, _translate, naive_utc
from .maintenance import _LOC_COLS, MARKS_CTE, _loc


@dataclass(frozen=True, slots=True)
class EventRow:
    """One row of the event log, as fsck compares it with its record."""

    model_id: str
    seq: int
    kind: str
    version: int
    record: str


# -- what the catalog claims ------------------------------------------------------------


def all_locations(s: Session) -> list[Location]:
    """Every ``objects`` row."""
    return [_loc(r) for r in s._all(f'SELECT {_LOC_COLS} FROM objects o ORDER BY o.pack, o."offset"')]


def stored_manifests(s: Session) -> dict[str, set[int]]:
    """Manifest digest -> the logical sizes recorded by the unpurged versions using it."""
    out: dict[str, set[int]] = {}
    for manifest, size in s._all(
            f"WITH {MARKS_CTE} SELECT DISTINCT v.manifest, v.logical_size FROM versions v "
            "LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version "
            "WHERE k.state IS DISTINCT FROM 'purge'"):
        out.setdefault(manifest, set()).add(size)
    return out


def manifest_chunk_lists(s: Session, manifests: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """The ``manifest_chunks`` rows of each manifest, in order."""
    out: dict[str, list[tuple[str, int]]] = {m: [] for m in manifests}
    for manifest, chunk, size in s._all(
            "SELECT manifest, chunk, size FROM manifest_chunks WHERE manifest IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY manifest, seq", [list(manifests)]):
        out[manifest].append((chunk, size))
    return out


def event_rows(s: Session) -> list[EventRow]:
    return [EventRow(*r) for r in s._all(
        "SELECT model_id, seq, kind, version, record FROM events ORDER BY model_id, seq")]


def event_times(s: Session) -> dict[tuple[str, int], datetime]:
    return {(r[0], r[1]): r[2] for r in s._all("SELECT model_id, seq, event_at FROM events")}


def users_of(s: Session, digests: Sequence[str]) -> dict[str, list[str]]:
    """For each digest, what needs it: ``model@version`` of versions, ``model#seq`` of events."""
    if not digests:
        return {}
    rows = s._all(
        "WITH cand AS (SELECT unnest(?::VARCHAR[]) AS digest) "
        "SELECT c.digest, v.model_id || '@' || v.version FROM cand c JOIN versions v ON v.manifest = c.digest "
        "UNION SELECT c.digest, v.model_id || '@' || v.version FROM cand c "
        "JOIN manifest_chunks mc ON mc.chunk = c.digest JOIN versions v ON v.manifest = mc.manifest "
        "UNION SELECT c.digest, e.model_id || '#' || e.seq FROM cand c JOIN events e ON e.record = c.digest "
        "ORDER BY 1, 2", [list(set(digests))])
    out: dict[str, list[str]] = {}
    for digest, user in rows:
        out.setdefault(digest, []).append(user)
    return out


def counts(s: Session) -> tuple[int, int]:
    """(models, events) in the catalog."""
    (models,), = s._all("SELECT count(*) FROM models")
    (events,), = s._all("SELECT count(*) FROM events")
    return models, events


# -- repairs (each one transaction) -------------------------------------------------------


def repoint(s: Session, locs: Sequence[Location], packs: Sequence[tuple[str, int, int]], at: datetime) -> None:
    """Make each of ``locs`` the catalog's location of its digest (an intact copy found elsewhere)."""
    with s.transaction(f"re-pointing {len(locs)} objects"):
        s._insert_rows("packs", [(p, size, n, naive_utc(at)) for p, size, n in packs], or_ignore=True)
        for l in locs:
            s.con.execute("DELETE FROM objects WHERE digest = ?", [l.digest.hex])
        s._insert_rows("objects", [(l.digest.hex, l.kind, l.pack.hex, l.offset, l.stored_size, l.size, l.codec)
                                   for l in locs])


def replace_manifest_chunks(s: Session, manifest: str, chunks: Sequence[tuple[str, int]]) -> None:
    """Rewrite a manifest's chunk list from the (verified) manifest itself."""
    with s.transaction(f"rewriting the chunk list of manifest {manifest[:16]}"):
        s.con.execute("DELETE FROM manifest_chunks WHERE manifest = ?", [manifest])
        s._insert_rows("manifest_chunks", [(manifest, i, d, n) for i, (d, n) in enumerate(chunks)])


def forget_pack_row(s: Session, pack: str) -> None:
    """Drop the ``packs`` row of a pack that is gone and that no ``objects`` row uses."""
    with s.transaction(f"forgetting pack {pack[:16]}"):
        s.con.execute("DELETE FROM packs WHERE pack = ? AND NOT EXISTS "
                      "(SELECT 1 FROM objects WHERE pack = ?)", [pack, pack])


def set_pack_size(s: Session, pack: str, size: int) -> None:
    with s.transaction(f"correcting the size of pack {pack[:16]}"):
        s.con.execute("UPDATE packs SET size = ? WHERE pack = ?", [size, pack])


# -- rebuild -------------------------------------------------------------------------------


class _Nested(Session):
    """A session inside an outer transaction: each mutation's own transaction joins it."""

    @contextmanager
    def transaction(self, what: str) -> Iterator[None]:
        try:
            yield
        except duckdb.Error as exc:
            raise _translate(exc, what) from exc


@contextmanager
def one_transaction(s: Session, what: str) -> Iterator[Session]:
    """Many mutations as one transaction (a rebuild replays thousands; a commit costs ~1 ms)."""
    with s.transaction(what):
        yield _Nested(s.con)


def load_index(s: Session, packs: Iterable[tuple[str, int, int, datetime]], locs: Sequence[Location],
               manifests: dict[str, Sequence[tuple[str, int]]]) -> None:
    """Fill ``packs``, ``objects`` and ``manifest_chunks`` of an empty catalog in one transaction."""
    with s.transaction("loading the object index"):
        s._insert_rows("packs", [(p, size, n, naive_utc(at)) for p, size, n, at in packs])
        s._insert_rows("objects", [(l.digest.hex, l.kind, l.pack.hex, l.offset, l.stored_size, l.size, l.codec)
                                   for l in locs])
        s._insert_rows("manifest_chunks", [(m, i, d, n) for m, chunks in manifests.items()
                                           for i, (d, n) in enumerate(chunks)])


def recompute_new_bytes(s: Session) -> None:
    """Set each unpurged version's ``new_bytes``: the stored bytes of the content it was
    the first (in save order) to reference."""
    with s.transaction("recomputing new_bytes"):
        s.con.execute(
            f"WITH {MARKS_CTE}, "
            "kept AS (SELECT v.model_id, v.version, v.manifest, v.saved_at FROM versions v "
            "  LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version "
            "  WHERE k.state IS DISTINCT FROM 'purge'), "
            "refs AS (SELECT model_id, version, saved_at, manifest AS digest FROM kept "
            "  UNION SELECT k.model_id, k.version, k.saved_at, mc.chunk FROM kept k "
            "  JOIN manifest_chunks mc ON mc.manifest = k.manifest), "
            "firsts AS (SELECT digest, arg_min(model_id, (saved_at, model_id, version)) AS model_id, "
            "  arg_min(version, (saved_at, model_id, version)) AS version FROM refs GROUP BY digest), "
            "fresh AS (SELECT f.model_id, f.version, sum(o.stored_size) AS bytes FROM firsts f "
            "  JOIN objects o ON o.digest = f.digest GROUP BY ALL) "
            "UPDATE versions v SET new_bytes = coalesce((SELECT bytes FROM fresh f "
            "  WHERE f.model_id = v.model_id AND f.version = v.version), 0) "
            "WHERE (v.model_id, v.version) IN (SELECT (model_id, version) FROM kept)")
