"""The catalog side of gc, retention and purge: liveness, pack usage, retention marks.

Retention state lives in the event log, not in a table of its own: a version's latest
``retire``/``restore``/``purge`` event says whether it is live, retired (a version
tombstone a policy set, undoable) or purged (gc freed its content; final). So a rebuilt
catalog gets that state back by replaying the records like any other event.

A digest is **live** when gc must keep it: the record of every event (history is kept
forever, and records are what a rebuild replays), and the manifest and chunks of every
version that is not purged. Functions here take a :class:`Session`; callers hold the
catalog lock, which is what makes a re-check final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from ..digest import Digest
from ..location import MANIFEST, Location
from .catalog import Session, naive_utc

MARK_KINDS = ("retire", "restore", "purge")

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
    UNION SELECT chunk FROM manifest_chunks WHERE manifest IN (SELECT manifest FROM kept)
    UNION SELECT record FROM events)"""


def _purging_params(purging: Sequence[tuple[str, int]]) -> list[list]:
    return [[m for m, _ in purging], [v for _, v in purging]]


def _loc(r: tuple) -> Location:
    return Location(Digest.from_hex(r[0]), r[1], Digest.from_hex(r[2]), r[3], r[4], r[5], r[6])


_LOC_COLS = 'o.digest, o.kind, o.pack, o."offset", o.stored_size, o.size, o.codec'


@dataclass(frozen=True, slots=True)
class PackUsage:
    """What the catalog says about one pack: its rows, and which of them are live."""

    pack: str
    rows: int
    live_rows: int
    live_bytes: int


@dataclass(frozen=True, slots=True)
class PurgeCandidate:
    """A version gc may purge: its model is tombstoned, or the version is retired."""

    model_id: str
    version: int
    reason: str
    since: datetime
    logical_size: int
    new_bytes: int


# -- liveness ---------------------------------------------------------------------------


def pack_usage(s: Session, purging: Sequence[tuple[str, int]] = ()) -> dict[str, PackUsage]:
    """Rows and live rows of every pack the ``objects`` table points at."""
    rows = s._all(
        f"WITH {_LIVE_CTES} SELECT o.pack, count(*), count(l.digest), "
        "coalesce(sum(o.stored_size) FILTER (WHERE l.digest IS NOT NULL), 0) "
        "FROM objects o LEFT JOIN live l ON l.digest = o.digest GROUP BY o.pack",
        _purging_params(purging))
    return {r[0]: PackUsage(r[0], r[1], r[2], r[3]) for r in rows}


def unlocated_live(s: Session, purging: Sequence[tuple[str, int]] = ()) -> list[str]:
    """Live digests the ``objects`` table has no location for (the catalog lost track)."""
    return [r[0] for r in s._all(
        f"WITH {_LIVE_CTES} SELECT l.digest FROM live l "
        "WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.digest = l.digest) ORDER BY 1",
        _purging_params(purging))]


def live_among(s: Session, digests: Sequence[str], purging: Sequence[tuple[str, int]] = ()) -> set[str]:
    """Those of ``digests`` that are live now (or once ``purging`` is purged)."""
    if not digests:
        return set()
    return {r[0] for r in s._all(
        f"WITH {_LIVE_CTES}, cand AS (SELECT unnest(?::VARCHAR[]) AS digest) "
        "SELECT digest FROM cand WHERE digest IN (SELECT digest FROM live)",
        _purging_params(purging) + [list(set(digests))])}


def live_digests(s: Session) -> set[str]:
    """Every live digest."""
    return {r[0] for r in s._all(f"WITH {_LIVE_CTES} SELECT digest FROM live", [[], []])}


def live_locations(s: Session, packs: Sequence[str]) -> dict[str, list[Location]]:
    """The live rows pointing at each of ``packs`` (what a repack must copy)."""
    out: dict[str, list[Location]] = {p: [] for p in packs}
    for r in s._all(
            f"WITH {_LIVE_CTES} SELECT {_LOC_COLS} FROM objects o "
            "WHERE o.pack IN (SELECT unnest(?::VARCHAR[])) AND o.digest IN (SELECT digest FROM live) "
            'ORDER BY o.pack, o."offset"', [[], [], list(packs)]):
        out[r[2]].append(_loc(r))
    return out


def catalog_packs(s: Session) -> dict[str, int]:
    """Every pack the ``packs`` table lists, with the size recorded when it was written."""
    return dict(s._all("SELECT pack, size FROM packs"))


def pack_entries(s: Session) -> dict[str, int]:
    """How many entries each pack the ``packs`` table lists holds."""
    return dict(s._all("SELECT pack, entries FROM packs"))


# -- gc's row changes (each one transaction, under the caller's lock) -------------------

_IN_LIST = "pack IN (SELECT unnest(?::VARCHAR[]))"


def _forget_rows(s: Session, packs: Sequence[str]) -> None:
    # A manifest's chunk list lives exactly as long as its objects row: the save path
    # decides whether to insert the list by whether the manifest's row exists.
    s.con.execute(
        "DELETE FROM manifest_chunks WHERE manifest IN "
        f"(SELECT digest FROM objects WHERE kind = {MANIFEST} AND {_IN_LIST})", [list(packs)])
    s.con.execute(f"DELETE FROM objects WHERE {_IN_LIST}", [list(packs)])


def _rows_of(s: Session, packs: Sequence[str]) -> list[tuple[str, str]]:
    return s._all(f"SELECT pack, digest FROM objects WHERE {_IN_LIST}", [list(packs)])


def forget_packs(s: Session, packs: Sequence[str]) -> set[str]:
    """Drop every row (and ``packs`` row) of those of ``packs`` no live row points at.

    Returns the packs forgotten, whose files may now be deleted; a pack with a live row
    (a save deduplicated onto it since gc planned) is left as it is.
    """
    if not packs:
        return set()
    with s.transaction(f"forgetting {len(packs)} packs"):
        rows = _rows_of(s, packs)
        live = live_among(s, [d for _, d in rows])
        drop = sorted(set(packs) - {p for p, d in rows if d in live})
        _forget_rows(s, drop)
        s.con.execute(f"DELETE FROM packs WHERE {_IN_LIST}", [drop])
    return set(drop)


def move_entries(s: Session, moves: dict[str, Sequence[Location]],
                 new_packs: Sequence[tuple[str, int, int]], at: datetime) -> set[str]:
    """For each old pack, point its rows at the copies in ``moves[old]`` and drop its dead rows.

    Returns the old packs moved. One whose live row has no copy (a save deduplicated onto
    it after the repack was planned) is left as it is, as is one copied into itself.
    """
    if not moves:
        return set()
    with s.transaction(f"repacking {len(moves)} packs"):
        copied = {(old, l.digest.hex) for old, locs in moves.items() for l in locs}
        uncopied = [(p, d) for p, d in _rows_of(s, list(moves)) if (p, d) not in copied]
        live = live_among(s, [d for _, d in uncopied])
        blocked = {p for p, d in uncopied if d in live}
        blocked |= {old for old, locs in moves.items() if any(l.pack.hex == old for l in locs)}
        ok = sorted(set(moves) - blocked)
        s._insert_rows("packs", [(p, size, n, naive_utc(at)) for p, size, n in new_packs], or_ignore=True)
        moved = [(old, l) for old in ok for l in moves[old]]
        s.con.execute(
            'UPDATE objects SET pack = n.pack, "offset" = n.off, stored_size = n.stored, codec = n.codec '
            "FROM (SELECT unnest(?::VARCHAR[]) AS digest, unnest(?::VARCHAR[]) AS old, "
            "unnest(?::VARCHAR[]) AS pack, unnest(?::BIGINT[]) AS off, unnest(?::BIGINT[]) AS stored, "
            "unnest(?::TINYINT[]) AS codec) n WHERE objects.digest = n.digest AND objects.pack = n.old",
            [[l.digest.hex for _, l in moved], [old for old, _ in moved], [l.pack.hex for _, l in moved],
             [l.offset for _, l in moved], [l.stored_size for _, l in moved], [l.codec for _, l in moved]])
        _forget_rows(s, ok)
    return set(ok)


# -- purges and events the catalog may not know -------------------------------------------


def purged_at(s: Session, model_id: str, version: int) -> datetime | None:
    """When gc purged this version's content, or None if it did not."""
    rows = s._all("SELECT min(event_at) FROM events WHERE model_id = ? AND version = ? AND kind = 'purge'",
                  [model_id, version])
    return rows[0][0].replace(tzinfo=timezone.utc) if rows and rows[0][0] else None


def purge_candidates(s: Session, deleted_before: datetime, retired_before: datetime) -> list[PurgeCandidate]:
    """Versions of models tombstoned before ``deleted_before`` and versions retired before
    ``retired_before`` whose content is still stored."""
    rows = s._all(
        f"WITH {MARKS_CTE}, "
        "tomb AS (SELECT model_id, max(event_at) AS at FROM events WHERE kind = 'delete' GROUP BY model_id) "
        "SELECT v.model_id, v.version, CASE WHEN m.deleted THEN 'model deleted' ELSE 'version retired' END, "
        "CASE WHEN m.deleted THEN t.at ELSE k.since END, v.logical_size, v.new_bytes "
        "FROM versions v JOIN models m ON m.model_id = v.model_id "
        "LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version "
        "LEFT JOIN tomb t ON t.model_id = v.model_id "
        "WHERE k.state IS DISTINCT FROM 'purge' AND ((m.deleted AND t.at <= ?) "
        "OR (NOT m.deleted AND k.state = 'retire' AND k.since <= ?)) ORDER BY 1, 2",
        [naive_utc(deleted_before), naive_utc(retired_before)])
    return [PurgeCandidate(r[0], r[1], r[2], r[3].replace(tzinfo=timezone.utc), r[4], r[5]) for r in rows]


def referenced_records(s: Session, digests: Sequence[str]) -> set[str]:
    """Those of ``digests`` that are the record of an event the catalog knows."""
    if not digests:
        return set()
    return {r[0] for r in s._all("SELECT record FROM events WHERE record IN (SELECT unnest(?::VARCHAR[]))",
                                 [list(set(digests))])}


def known_events(s: Session, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], datetime]:
    """When the catalog recorded each of the ``(model_id, seq)`` events it knows among ``keys``."""
    if not keys:
        return {}
    rows = s._all("SELECT e.model_id, e.seq, e.event_at FROM events e JOIN (SELECT unnest(?::VARCHAR[]) AS m, "
                  "unnest(?::INTEGER[]) AS q) k ON e.model_id = k.m AND e.seq = k.q",
                  [[m for m, _ in keys], [q for _, q in keys]])
    return {(m, q): at.replace(tzinfo=timezone.utc) for m, q, at in rows}
