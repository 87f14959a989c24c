"""Retention candidates, and users' SQL predicates evaluated in a sandbox.

A policy's ``--where`` predicate is user SQL, so it never runs on the catalog connection:
the candidate versions are copied into a private in-memory DuckDB holding one table,
``v_versions``, with file access and configuration changes switched off. The predicate
can read that table and nothing else, and can change nothing that matters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import duckdb
import pyarrow as pa

from ..errors import RetentionPolicyError
from .catalog import Session, _translate, naive_utc
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
ever_lists AS (SELECT model_id, version, list(DISTINCT tag ORDER BY tag) AS ever_tags FROM ever GROUP BY ALL)
SELECT v.*, v.version = m.head_version AS is_head, m.deleted AS model_deleted,
    m.head_version - v.version AS newer_versions,
    date_diff('second', v.saved_at, ?::TIMESTAMP) / 86400.0 AS age_days,
    coalesce(CASE k.state WHEN 'retire' THEN 'retired' WHEN 'purge' THEN 'purged' END, 'live') AS state,
    coalesce(e.ever_tags, []::VARCHAR[]) AS ever_tags
FROM v_versions v JOIN models m ON m.model_id = v.model_id
LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version
LEFT JOIN ever_lists e ON e.model_id = v.model_id AND e.version = v.version
ORDER BY v.model_id, v.version"""


def tag_event_records(s: Session) -> list[str]:
    """Record digests of every tag event (what a tag event set lives only in its record)."""
    return [r[0] for r in s._all("SELECT record FROM events WHERE kind = 'tag'")]


def candidates(s: Session, event_tags: Sequence[tuple[str, int, str]], now: datetime) -> pa.Table:
    """Every version with the columns a policy may test, as an Arrow table.

    ``event_tags`` are ``(model_id, version, "key=value")`` set by tag events, so that
    ``ever_tags`` holds every tag a version ever had, even one removed since.
    """
    params = [[t[0] for t in event_tags], [t[1] for t in event_tags], [t[2] for t in event_tags],
              naive_utc(now)]
    try:
        return s.con.sql(_CANDIDATES, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise _translate(exc, "listing retention candidates") from exc


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
