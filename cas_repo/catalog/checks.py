"""The catalog side of fsck and rebuild-catalog: what the index claims, and how it compares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from ..location import Location
from .catalog import Session, translate_error
from .convert import LOCATION_COLS, location_of
from .maintenance import MARKS_CTE

# Every table the fold of the log writes (not the migrations' own bookkeeping).
INDEX_TABLES = ("models", "versions", "lineage", "tags", "events", "event_tags", "objects", "manifest_chunks",
                "packs", "alias_moves", "commits", "metric_log", "policies", "log_index")


# -- what the catalog claims ------------------------------------------------------------


def all_locations(s: Session) -> list[Location]:
    """Every ``objects`` row."""
    return [location_of(r) for r in s.rows(f'SELECT {LOCATION_COLS} FROM objects o ORDER BY o.pack, o."offset"')]


def stored_manifests(s: Session) -> dict[str, set[int]]:
    """Manifest digest -> the logical sizes recorded by the unpurged versions using it."""
    out: dict[str, set[int]] = {}
    for manifest, size in s.rows(
            f"WITH {MARKS_CTE} SELECT DISTINCT v.manifest, v.logical_size FROM versions v "
            "LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version "
            "WHERE k.state IS DISTINCT FROM 'purge'"):
        out.setdefault(manifest, set()).add(size)
    return out


def manifest_chunk_lists(s: Session, manifests: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """The ``manifest_chunks`` rows of each manifest, in order."""
    out: dict[str, list[tuple[str, int]]] = {m: [] for m in manifests}
    for manifest, chunk, size in s.rows(
            "SELECT manifest, chunk, size FROM manifest_chunks WHERE manifest IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY manifest, seq", [list(manifests)]):
        out[manifest].append((chunk, size))
    return out


def users_of(s: Session, digests: Sequence[str]) -> dict[str, list[str]]:
    """For each digest, the ``model@version`` of every version that needs it."""
    if not digests:
        return {}
    rows = s.rows(
        "WITH cand AS (SELECT unnest(?::VARCHAR[]) AS digest) "
        "SELECT c.digest, v.model_id || '@' || v.version FROM cand c JOIN versions v ON v.manifest = c.digest "
        "UNION SELECT c.digest, v.model_id || '@' || v.version FROM cand c "
        "JOIN manifest_chunks mc ON mc.chunk = c.digest JOIN versions v ON v.manifest = mc.manifest "
        "ORDER BY 1, 2", [list(set(digests))])
    out: dict[str, list[str]] = {}
    for digest, user in rows:
        out.setdefault(digest, []).append(user)
    return out


def counts(s: Session) -> tuple[int, int]:
    """(models, events) in the catalog."""
    (models,), = s.rows("SELECT count(*) FROM models")
    (events,), = s.rows("SELECT count(*) FROM events")
    return models, events


def index_counts(s: Session) -> dict[str, int]:
    """How many models, events, objects and packs the catalog holds."""
    (models, events, objects, packs), = s.rows(
        "SELECT (SELECT count(*) FROM models), (SELECT count(*) FROM events), (SELECT count(*) FROM objects), "
        "(SELECT count(*) FROM packs)")
    return {"models": models, "events": events, "objects": objects, "packs": packs}


def counts_in(path: Path) -> tuple[int, int] | None:
    """(models, events) of the catalog file at ``path``, read-only; None if it cannot be read."""
    if not path.exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True, config={"threads": 1})
    except duckdb.Error:
        return None
    try:
        return counts(Session(con, path))
    except Exception:
        return None
    finally:
        con.close()


# -- the index against a fresh fold of the log --------------------------------------------


def differences(s: Session, fresh: Path) -> dict[str, tuple[int, int]]:
    """Per table, the rows only this catalog has and the rows only the catalog at ``fresh`` has.

    Both catalogs come from the same migrations, so their tables have the same columns in
    the same order; tables that agree are left out.
    """
    out: dict[str, tuple[int, int]] = {}
    try:
        s.con.execute("ATTACH ? AS fresh_fold (READ_ONLY)", [str(fresh)])
    except duckdb.Error as exc:
        raise translate_error(exc, "opening the fresh fold of the log", fresh) from exc
    try:
        for table in INDEX_TABLES:  # names from this module only
            (ours,), = s.rows(f"SELECT count(*) FROM (SELECT * FROM main.{table} "
                              f"EXCEPT ALL SELECT * FROM fresh_fold.{table})")
            (theirs,), = s.rows(f"SELECT count(*) FROM (SELECT * FROM fresh_fold.{table} "
                                f"EXCEPT ALL SELECT * FROM main.{table})")
            if ours or theirs:
                out[table] = (ours, theirs)
    finally:
        s.con.execute("DETACH fresh_fold")
    return out
