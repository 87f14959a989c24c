"""The dedup audit's SQL: every number ``cas-repo audit`` prints comes from one of these.

Each query is the shared ``WITH`` clause (:data:`AUDIT_WITH`) followed by one body of
:data:`AUDIT_QUERIES`; ``docs/maintenance.md`` quotes both verbatim (a test keeps them in
step), so anyone can reproduce a number with DuckDB on a copy of the catalog.

Sizes: ``logical`` is what full copies would take (a version's serialized size);
``stored_size`` is an entry's bytes in its pack (after zstd, when it paid); pack bytes
are whole pack files (entries plus header and index).
"""

from __future__ import annotations

from typing import Any

import duckdb

from .catalog import Session, translate_error
from .maintenance import MARKS_CTE

AUDIT_WITH = "WITH " + MARKS_CTE + """,
-- versions whose content is stored (every version gc has not purged)
stored AS (
    SELECT v.model_id, v.version, v.experiment_name, v.manifest, v.logical_size, v.saved_at
    FROM versions v LEFT JOIN marks k ON k.model_id = v.model_id AND k.version = v.version
    WHERE k.state IS DISTINCT FROM 'purge'),
-- each stored version's distinct objects: its manifest and its chunks
refs AS (
    SELECT s.model_id, s.version, s.experiment_name, s.manifest AS digest FROM stored s
    UNION
    SELECT s.model_id, s.version, s.experiment_name, mc.chunk FROM stored s
    JOIN manifest_chunks mc ON mc.manifest = s.manifest),
-- how many versions, models and experiments use each object
fan AS (
    SELECT digest, count(*) AS users, count(DISTINCT model_id) AS model_users,
        count(DISTINCT experiment_name) AS experiment_users
    FROM refs GROUP BY digest),
sized AS (
    SELECT r.*, o.kind, o.size, o.stored_size, f.users, f.model_users, f.experiment_users
    FROM refs r JOIN objects o ON o.digest = r.digest JOIN fan f ON f.digest = r.digest)
"""

AUDIT_QUERIES: dict[str, str] = {
    "totals": """SELECT
    (SELECT count(*) FROM models) AS models,
    (SELECT count(*) FROM models WHERE deleted) AS deleted_models,
    (SELECT count(*) FROM stored) AS versions,
    (SELECT count(*) FROM versions) - (SELECT count(*) FROM stored) AS purged_versions,
    (SELECT coalesce(sum(logical_size), 0) FROM stored) AS logical_bytes,
    (SELECT coalesce(sum(size), 0) FROM packs) AS physical_bytes,
    (SELECT count(*) FROM packs) AS packs,
    (SELECT count(*) FROM objects) AS objects,
    (SELECT count(*) FROM objects WHERE kind = 0) AS chunks,
    (SELECT count(*) FROM objects WHERE kind = 1) AS manifests,
    (SELECT count(*) FROM objects WHERE kind = 2) AS records,
    (SELECT coalesce(sum(size), 0) FROM objects WHERE digest IN (SELECT digest FROM refs)) AS content_bytes,
    (SELECT coalesce(sum(stored_size), 0) FROM objects
     WHERE digest IN (SELECT digest FROM refs)) AS content_stored_bytes,
    (SELECT coalesce(sum(stored_size), 0) FROM objects WHERE digest IN (SELECT record FROM events)) AS history_bytes,
    -- header 8 + nonce 16 + tail 12, and a 58-byte index record per entry (objects/pack.py;
    -- packs of a store upgraded from format 1 have no nonce and show 16 bytes unreferenced).
    (SELECT coalesce(sum(36 + 58 * entries), 0) FROM packs) AS pack_overhead_bytes""",
    "experiments": """, e_logical AS (
    SELECT experiment_name, count(DISTINCT model_id) AS models, count(*) AS versions,
        sum(logical_size) AS logical_bytes
    FROM stored GROUP BY experiment_name),
e_objects AS (SELECT DISTINCT experiment_name, digest, stored_size, experiment_users FROM sized)
SELECT l.experiment_name, l.models, l.versions, l.logical_bytes,
    coalesce(sum(o.stored_size), 0) AS physical_bytes,
    coalesce(sum(o.stored_size) FILTER (WHERE o.experiment_users = 1), 0) AS unique_bytes,
    coalesce(sum(o.stored_size) FILTER (WHERE o.experiment_users > 1), 0) AS shared_bytes
FROM e_logical l LEFT JOIN e_objects o ON o.experiment_name = l.experiment_name
GROUP BY ALL ORDER BY physical_bytes DESC, l.experiment_name""",
    "models": """, m_logical AS (
    SELECT model_id, count(*) AS versions, sum(logical_size) AS logical_bytes FROM stored GROUP BY model_id),
m_objects AS (SELECT DISTINCT model_id, digest, stored_size, model_users FROM sized)
SELECT l.model_id, m.experiment_name, m.deleted, l.versions, l.logical_bytes,
    coalesce(sum(o.stored_size), 0) AS physical_bytes,
    coalesce(sum(o.stored_size) FILTER (WHERE o.model_users = 1), 0) AS reclaimable_bytes,
    coalesce(sum(o.stored_size) FILTER (WHERE o.model_users > 1), 0) AS shared_bytes
FROM m_logical l JOIN models m ON m.model_id = l.model_id
LEFT JOIN m_objects o ON o.model_id = l.model_id
GROUP BY ALL ORDER BY physical_bytes DESC, l.model_id""",
    "versions": """SELECT s.model_id, s.version, s.experiment_name, s.saved_at, s.manifest,
    s.logical_size AS logical_bytes,
    coalesce(sum(z.stored_size), 0) AS physical_bytes,
    coalesce(sum(z.stored_size) FILTER (WHERE z.users = 1), 0) AS unique_bytes,
    coalesce(sum(z.stored_size) FILTER (WHERE z.users > 1), 0) AS shared_bytes
FROM stored s LEFT JOIN sized z ON z.model_id = s.model_id AND z.version = s.version
GROUP BY ALL ORDER BY s.model_id, s.version""",
    "shared_chunks": """SELECT digest, size, stored_size, users AS versions, model_users AS models,
    (users - 1) * stored_size AS bytes_saved
FROM (SELECT DISTINCT digest, kind, size, stored_size, users, model_users FROM sized)
WHERE kind = 0 AND users > 1
ORDER BY versions DESC, bytes_saved DESC, digest LIMIT 20""",
    "identical_versions": """SELECT manifest, count(*) AS versions, count(DISTINCT model_id) AS models,
    max(logical_size) AS logical_bytes,
    list(model_id || '@' || version ORDER BY model_id, version) AS refs
FROM stored GROUP BY manifest HAVING count(DISTINCT model_id) > 1
ORDER BY versions DESC, manifest""",
    "growth": """, ordered AS (
    SELECT z.model_id, z.version, z.stored_size,
        row_number() OVER (PARTITION BY z.digest ORDER BY s.saved_at, s.model_id, s.version) AS nth
    FROM sized z JOIN stored s ON s.model_id = z.model_id AND s.version = z.version)
SELECT s.model_id, s.version, s.saved_at, s.logical_size AS logical_bytes,
    coalesce(sum(o.stored_size) FILTER (WHERE o.nth = 1), 0) AS new_bytes
FROM stored s LEFT JOIN ordered o ON o.model_id = s.model_id AND o.version = s.version
GROUP BY ALL ORDER BY s.saved_at, s.model_id, s.version""",
    "pins": """SELECT a.model_id, a.alias, a.version, s.logical_size AS logical_bytes,
    coalesce(sum(z.stored_size) FILTER (WHERE z.users = 1), 0) AS unique_bytes
FROM v_aliases a JOIN stored s ON s.model_id = a.model_id AND s.version = a.version
LEFT JOIN sized z ON z.model_id = a.model_id AND z.version = a.version
GROUP BY ALL ORDER BY a.model_id, a.alias""",
}


def audit_sql(name: str) -> str:
    """The complete text of one audit query (the ``WITH`` clause, then its body)."""
    return AUDIT_WITH + AUDIT_QUERIES[name]


def audit_tables(s: Session) -> dict[str, list[dict[str, Any]]]:
    """Run every audit query; each result as a list of ``column -> value`` rows."""
    out = {}
    for name in AUDIT_QUERIES:
        try:
            cur = s.con.execute(audit_sql(name))
            cols = [d[0] for d in cur.description]
            out[name] = [dict(zip(cols, r)) for r in cur.fetchall()]
        except duckdb.Error as exc:
            raise translate_error(exc, f"the audit query {name!r}") from exc
    return out
