"""The catalog side of gc, retention and purge: liveness, pack usage, retention marks.

Retention state lives in the event log, not in a table of its own: a version's latest
``retire``/``restore``/``purge`` event says whether it is live, retired (a version
tombstone a policy set, undoable) or purged (gc freed its content; final). The catalog
is folded from the log, so a rebuilt catalog has that state back like any other event.

A digest is **live** when gc must keep it: the manifest and chunks of every version that
is not purged. (Events are log commits, not entries in packs; the event records that
packs of a format-1 store still hold are dead weight.) These functions only read: every
change maintenance makes is a log operation, folded into the catalog like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..location import MANIFEST, Location
from .catalog import Session
from .convert import LOCATION_COLS, aware_utc, location_of, naive_utc

# The retention state of each version that has one ('retire', 'restore' or 'purge') and
# since when; a purge is final whatever follows it.
MARKS_CTE = """marks AS (
    SELECT model_id, version,
        CASE WHEN bool_or(kind = 'purge') THEN 'purge' ELSE arg_max(kind, seq) END AS state,
        CASE WHEN bool_or(kind = 'purge') THEN min(event_at) FILTER (WHERE kind = 'purge')
             ELSE arg_max(event_at, seq) END AS since
    FROM events WHERE kind IN ('retire', 'restore', 'purge')
    GROUP BY model_id, version)"""

# Live digests, given the versions about to be purged as two list parameters.
_LIVE_CTES = MARKS_CTE + """,
purging AS (SELECT unnest(?::VARCHAR[]) AS model_id, unnest(?::INTEGER[]) AS version),
kept AS (
    SELECT DISTINCT v.manifest FROM versions v
    LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version
    WHERE k.state IS DISTINCT FROM 'purge'
      AND NOT EXISTS (SELECT 1 FROM purging p WHERE p.model_id = v.model_id AND p.version = v.version)),
live AS (
    SELECT manifest AS digest FROM kept
    UNION SELECT chunk FROM manifest_chunks WHERE manifest IN (SELECT manifest FROM kept))"""

IN_PACKS = "pack IN (SELECT unnest(?::VARCHAR[]))"


def _purging_params(purging: Sequence[tuple[str, int]]) -> list[list]:
    return [[m for m, _ in purging], [v for _, v in purging]]


@dataclass(frozen=True, slots=True)
class PackUsage:
    """What the catalog says about one pack: its rows, and which of them are live."""

    pack: str
    rows: int
    live_rows: int
    live_bytes: int


@dataclass(frozen=True, slots=True)
class PurgeCandidate:
    """A version gc may purge: its model is tombstoned, or the version is retired.

    ``seq`` is the model's last event number when the candidate was listed: a purge of a
    tombstoned model's version is only committed if no event of that model came since.
    """

    model_id: str
    version: int
    reason: str
    since: datetime
    logical_size: int
    new_bytes: int
    seq: int = 0


# -- liveness ---------------------------------------------------------------------------


def pack_usage(s: Session, purging: Sequence[tuple[str, int]] = ()) -> dict[str, PackUsage]:
    """Rows and live rows of every pack the ``objects`` table points at."""
    rows = s.rows(
        f"WITH {_LIVE_CTES} SELECT o.pack, count(*), count(l.digest), "
        "coalesce(sum(o.stored_size) FILTER (WHERE l.digest IS NOT NULL), 0) "
        "FROM objects o LEFT JOIN live l ON l.digest = o.digest GROUP BY o.pack",
        _purging_params(purging))
    return {r[0]: PackUsage(r[0], r[1], r[2], r[3]) for r in rows}


def unlocated_live(s: Session, purging: Sequence[tuple[str, int]] = ()) -> list[str]:
    """Live digests the ``objects`` table has no location for (the log lost track of them)."""
    return [r[0] for r in s.rows(
        f"WITH {_LIVE_CTES} SELECT l.digest FROM live l "
        "WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.digest = l.digest) ORDER BY 1",
        _purging_params(purging))]


def live_digests(s: Session) -> set[str]:
    """Every live digest."""
    return {r[0] for r in s.rows(f"WITH {_LIVE_CTES} SELECT digest FROM live", [[], []])}


def live_locations(s: Session, packs: Sequence[str],
                   purging: Sequence[tuple[str, int]] = ()) -> dict[str, list[Location]]:
    """The live rows pointing at each of ``packs`` (what a repack must copy)."""
    out: dict[str, list[Location]] = {p: [] for p in packs}
    for r in s.rows(
            f"WITH {_LIVE_CTES} SELECT {LOCATION_COLS} FROM objects o "
            f"WHERE o.{IN_PACKS} AND o.digest IN (SELECT digest FROM live) "
            'ORDER BY o.pack, o."offset"', [*_purging_params(purging), list(packs)]):
        out[r[2]].append(location_of(r))
    return out


def catalog_packs(s: Session) -> dict[str, int]:
    """Every pack the log mentions and has not forgotten, with the size recorded when it was written."""
    return dict(s.rows("SELECT pack, size FROM packs"))


def pack_entries(s: Session) -> dict[str, int]:
    """How many entries each pack the ``packs`` table lists holds."""
    return dict(s.rows("SELECT pack, entries FROM packs"))


# -- what gc's commit must re-check (see maintenance/guard.py) -----------------------------


def rows_in_packs(s: Session, packs: Sequence[str]) -> dict[str, str]:
    """``digest -> pack`` of every ``objects`` row pointing at one of ``packs``."""
    if not packs:
        return {}
    return dict(s.rows(f"SELECT digest, pack FROM objects WHERE {IN_PACKS}", [list(packs)]))


def chunks_in_packs(s: Session, packs: Sequence[str]) -> dict[str, set[str]]:
    """For each manifest with a chunk list, its chunks whose row points at one of ``packs``."""
    out: dict[str, set[str]] = {}
    if not packs:
        return out
    for manifest, chunk in s.rows(
            "SELECT DISTINCT mc.manifest, mc.chunk FROM manifest_chunks mc JOIN objects o ON o.digest = mc.chunk "
            f"WHERE o.{IN_PACKS}", [list(packs)]):
        out.setdefault(manifest, set()).add(chunk)
    return out


def version_manifests(s: Session, refs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The manifest of each ``(model_id, version)`` among ``refs``."""
    if not refs:
        return {}
    rows = s.rows("SELECT v.model_id, v.version, v.manifest FROM versions v JOIN (SELECT unnest(?::VARCHAR[]) AS m, "
                  "unnest(?::INTEGER[]) AS n) r ON v.model_id = r.m AND v.version = r.n", _purging_params(refs))
    return {(m, v): d for m, v, d in rows}


# -- purges ---------------------------------------------------------------------------------


def purge_candidates(s: Session, deleted_before: datetime, retired_before: datetime) -> list[PurgeCandidate]:
    """Versions of models tombstoned before ``deleted_before`` and versions retired before
    ``retired_before`` whose content is still stored, except those an alias points at."""
    rows = s.rows(
        f"WITH {MARKS_CTE}, "
        "tomb AS (SELECT model_id, max(event_at) AS at FROM events WHERE kind = 'delete' GROUP BY model_id) "
        "SELECT v.model_id, v.version, CASE WHEN m.deleted THEN 'model deleted' ELSE 'version retired' END, "
        "CASE WHEN m.deleted THEN t.at ELSE k.since END, v.logical_size, v.new_bytes, m.last_seq "
        "FROM versions v JOIN models m ON m.model_id = v.model_id "
        "LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version "
        "LEFT JOIN tomb t ON t.model_id = v.model_id "
        "WHERE k.state IS DISTINCT FROM 'purge' "
        "AND NOT EXISTS (SELECT 1 FROM v_aliases a WHERE a.model_id = v.model_id AND a.version = v.version) "
        "AND ((m.deleted AND t.at <= ?) "
        "OR (NOT m.deleted AND k.state = 'retire' AND k.since <= ?)) ORDER BY 1, 2",
        [naive_utc(deleted_before), naive_utc(retired_before)])
    return [PurgeCandidate(r[0], r[1], r[2], aware_utc(r[3]), r[4], r[5], r[6]) for r in rows]


# -- applying gc's log operations (the fold, catalog/feed.py) ---------------------------------


def forget_rows(s: Session, packs: Sequence[str]) -> None:
    # A manifest's chunk list lives exactly as long as its objects row: the fold inserts
    # a chunk list only with a manifest the store did not hold.
    s.con.execute(
        "DELETE FROM manifest_chunks WHERE manifest IN "
        f"(SELECT digest FROM objects WHERE kind = {MANIFEST} AND {IN_PACKS})", [list(packs)])
    s.con.execute(f"DELETE FROM objects WHERE {IN_PACKS}", [list(packs)])
