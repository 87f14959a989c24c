"""Retention: its candidates, users' SQL predicates in a sandbox, and how its events fold in.

A policy's ``--where`` predicate is user SQL, so it never runs on the catalog connection:
the candidate versions are copied into a private in-memory DuckDB holding one table,
``v_versions``, with file access and configuration changes switched off. The predicate
can read that table and nothing else, and can change nothing that matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import pyarrow as pa

from ..errors import RetentionPolicyError
from ..log.ops import MarkOp
from .catalog import Session, translate_error
from .convert import aware_utc, naive_utc
from .maintenance import MARKS_CTE

# The sandbox's v_versions: the catalog view of that name plus what a policy needs
# (docs/maintenance.md lists the columns).
_CANDIDATES = f"""WITH {MARKS_CTE},
ever AS (
    SELECT v.model_id, v.version, t.key || '=' || (t.value ->> '$') AS tag
    FROM versions v, json_each(v.metadata_json::JSON -> 'tags') AS t
    UNION SELECT model_id, version, key || '=' || value FROM tags
    UNION SELECT model_id, version, key || '=' || value FROM event_tags WHERE value IS NOT NULL
    UNION SELECT unnest(?::VARCHAR[]), unnest(?::INTEGER[]), unnest(?::VARCHAR[])),
ever_lists AS (SELECT model_id, version, list(DISTINCT tag ORDER BY tag) AS ever_tags FROM ever GROUP BY ALL),
pins AS (SELECT model_id, version, list(alias ORDER BY alias) AS aliases FROM v_aliases GROUP BY ALL)
SELECT v.*, v.version = m.head_version AS is_head, m.deleted AS model_deleted, m.last_seq AS model_seq,
    m.head_version - v.version AS newer_versions,
    date_diff('second', v.saved_at, ?::TIMESTAMP) / 86400.0 AS age_days,
    coalesce(CASE k.state WHEN 'retire' THEN 'retired' WHEN 'purge' THEN 'purged' END, 'live') AS state,
    coalesce(e.ever_tags, []::VARCHAR[]) AS ever_tags,
    coalesce(a.aliases, []::VARCHAR[]) AS aliases
FROM v_versions v JOIN models m ON m.model_id = v.model_id
LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version
LEFT JOIN ever_lists e ON e.model_id = v.model_id AND e.version = v.version
LEFT JOIN pins a ON a.model_id = v.model_id AND a.version = v.version
ORDER BY v.model_id, v.version"""


def candidates(s: Session, now: datetime, event_tags: Sequence[tuple[str, int, str]] = ()) -> pa.Table:
    """Every version with the columns a policy may test, as an Arrow table.

    ``ever_tags`` holds every tag a version ever had, even one removed since (from the
    ``event_tags`` table; ``event_tags`` here adds ``(model_id, version, "key=value")``
    tuples known otherwise).
    """
    params = [[t[0] for t in event_tags], [t[1] for t in event_tags], [t[2] for t in event_tags],
              naive_utc(now)]
    try:
        return s.con.sql(_CANDIDATES, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise translate_error(exc, "listing retention candidates") from exc


def select_versions(table: pa.Table, predicate: str) -> set[tuple[str, int]]:
    """The ``(model_id, version)`` rows of ``table`` for which the SQL ``predicate`` holds.

    Raises:
        RetentionPolicyError: the predicate is not one valid boolean SQL expression.
    """
    sandbox = duckdb.connect(":memory:", config={"threads": 1})
    try:
        sandbox.register("_candidates", table)
        sandbox.execute("CREATE TABLE v_versions AS SELECT * FROM _candidates")
        sandbox.unregister("_candidates")
        sandbox.execute("SET enable_external_access = false")
        sandbox.execute("SET lock_configuration = true")
        sql = f"SELECT model_id, version FROM v_versions WHERE ({predicate})"
        try:
            statements = sandbox.extract_statements(sql)
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                raise RetentionPolicyError(
                    f"a --where predicate is one SQL boolean expression over v_versions, got {predicate!r}")
            return {(m, v) for m, v in sandbox.execute(sql).fetchall()}
        except duckdb.Error as exc:
            raise RetentionPolicyError(
                f"the predicate {predicate!r} cannot be evaluated over v_versions: {exc}; "
                "see docs/maintenance.md for its columns (e.g. \"metrics['IC'] < 0.02 AND age_days > 90\")"
            ) from exc
    finally:
        sandbox.close()


# -- retire, restore and purge events (planned here, folded in from the log) -----------------


def version_marks(s: Session) -> dict[tuple[str, int], tuple[str, datetime]]:
    """``(model_id, version) -> (state, since)`` for every version with a retention mark."""
    return {(r[0], r[1]): (r[2], aware_utc(r[3]))
            for r in s.rows(f"WITH {MARKS_CTE} SELECT model_id, version, state, since FROM marks")}


def insert_marks(s: Session, position: int, marks: Sequence[MarkOp]) -> None:
    """Fold retire/restore/purge events of the commit at ``position`` in (the caller holds the transaction)."""
    s.con.execute(
        "INSERT INTO events (model_id, seq, kind, version, event_at, record, log_position) "
        "SELECT unnest(?::VARCHAR[]), unnest(?::INTEGER[]), unnest(?::VARCHAR[]), "
        "unnest(?::INTEGER[]), unnest(?::TIMESTAMP[]), unnest(?::VARCHAR[]), ?",
        [[m.model_id for m in marks], [m.seq for m in marks], [m.kind for m in marks],
         [m.version for m in marks], [naive_utc(m.at) for m in marks], [m.event_id for m in marks], position])
    # A rebuilt catalog cannot size a version whose manifest is gone; the purge record
    # carries what the version was.
    sized = [m for m in marks if m.kind == "purge" and m.logical_size is not None]
    if sized:
        s.con.execute(
            "UPDATE versions SET logical_size = n.size, new_bytes = n.new FROM (SELECT unnest(?::VARCHAR[]) AS "
            "model_id, unnest(?::INTEGER[]) AS version, unnest(?::BIGINT[]) AS size, unnest(?::BIGINT[]) AS new) n "
            "WHERE versions.model_id = n.model_id AND versions.version = n.version",
            [[m.model_id for m in sized], [m.version for m in sized], [m.logical_size for m in sized],
             [m.new_bytes or 0 for m in sized]])
        s.con.execute(
            "UPDATE models SET head_logical_size = v.logical_size FROM versions v "
            "WHERE v.model_id = models.model_id AND v.version = models.head_version "
            "AND models.model_id IN (SELECT unnest(?::VARCHAR[]))", [list({m.model_id for m in sized})])
    latest = _latest(marks)
    s.con.execute(
        "UPDATE models SET last_seq = greatest(last_seq, n.seq), updated_at = n.at FROM (SELECT "
        "unnest(?::VARCHAR[]) AS model_id, unnest(?::INTEGER[]) AS seq, unnest(?::TIMESTAMP[]) AS at) n "
        "WHERE models.model_id = n.model_id",
        [[m for m, _, _ in latest], [q for _, q, _ in latest], [naive_utc(w) for _, _, w in latest]])


def _latest(marks: Sequence[MarkOp]) -> list[tuple[str, int, datetime]]:
    top: dict[str, MarkOp] = {}
    for m in marks:
        if m.model_id not in top or m.seq > top[m.model_id].seq:
            top[m.model_id] = m
    return [(m.model_id, m.seq, m.at) for m in top.values()]
