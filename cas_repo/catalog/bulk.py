"""Bulk import: Arrow tables of catalog rows in one transaction, heads derived after.

The path for anything that adds many rows at once — folding a long run of log commits
(:mod:`.bulk_fold`), generating benchmark catalogs — at DuckDB's Arrow insert speed
(millions of rows a second) rather than one transaction per version. The ``models``
head table is never imported: it is derived from the imported versions and events, so
it cannot disagree with them.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from ..errors import CatalogError
from .catalog import Session

# Insert order and the columns each importable table takes (all of them, by name).
TABLES: dict[str, tuple[str, ...]] = {
    "packs": ("pack", "size", "entries", "created_at"),
    "objects": ("digest", "kind", "pack", "offset", "stored_size", "size", "codec"),
    "manifest_chunks": ("manifest", "seq", "chunk", "size"),
    "lineage": ("model_id", "version", "parent_model", "parent_version", "relation"),
    "tags": ("model_id", "version", "key", "value"),
    "versions": ("model_id", "version", "manifest", "record", "kind", "rollback_of", "experiment_name",
                 "model_type", "created_at", "saved_at", "qlib_recorder_id", "logical_size", "new_bytes",
                 "metrics", "hyperparameters", "lineage", "metadata_json"),
    "events": ("model_id", "seq", "kind", "version", "event_at", "record", "log_position"),
    "event_tags": ("model_id", "seq", "version", "key", "value"),
    "alias_moves": ("log_position", "op_index", "model_id", "alias", "from_version", "to_version", "moved_at",
                    "moved_by"),
}

_REFRESH_HEADS = """
INSERT INTO models (model_id, experiment_name, model_type, head_version, last_seq, deleted, updated_at,
                    head_manifest, head_kind, head_rollback_of, head_saved_at, head_logical_size,
                    head_created_at, head_qlib_recorder_id, head_hyperparameters, head_metrics,
                    head_lineage, head_tags, head_parents, head_logged)
SELECT v.model_id, v.experiment_name, v.model_type, v.version, e.last_seq,
       coalesce(e.last_state = 'delete', false), e.updated_at,
       v.manifest, v.kind, v.rollback_of, v.saved_at, v.logical_size,
       v.metadata_json::JSON ->> 'created_at', v.qlib_recorder_id,
       (v.metadata_json::JSON -> 'hyperparameters')::VARCHAR, (v.metadata_json::JSON -> 'metrics')::VARCHAR,
       coalesce((v.metadata_json::JSON -> 'lineage')::VARCHAR, '{}'), v.tags, v.parents, v.logged
FROM (
    SELECT model_id, max(version) AS head FROM versions
    WHERE model_id IN (SELECT model_id FROM _cas_touched) GROUP BY model_id
) h
JOIN versions v ON v.model_id = h.model_id AND v.version = h.head
JOIN (
    SELECT model_id, max(seq) AS last_seq, max(event_at) AS updated_at,
           arg_max(kind, seq) FILTER (WHERE kind <> 'tag') AS last_state
    FROM events WHERE model_id IN (SELECT model_id FROM _cas_touched) GROUP BY model_id
) e ON e.model_id = v.model_id
ON CONFLICT (model_id) DO UPDATE SET
    experiment_name = excluded.experiment_name, model_type = excluded.model_type,
    head_version = excluded.head_version, last_seq = excluded.last_seq,
    deleted = excluded.deleted, updated_at = excluded.updated_at,
    head_manifest = excluded.head_manifest, head_kind = excluded.head_kind,
    head_rollback_of = excluded.head_rollback_of, head_saved_at = excluded.head_saved_at,
    head_logical_size = excluded.head_logical_size, head_created_at = excluded.head_created_at,
    head_qlib_recorder_id = excluded.head_qlib_recorder_id, head_hyperparameters = excluded.head_hyperparameters,
    head_metrics = excluded.head_metrics, head_lineage = excluded.head_lineage,
    head_tags = excluded.head_tags, head_parents = excluded.head_parents, head_logged = excluded.head_logged
"""

# Versions take their tags and parents columns from the tag and lineage rows (imported
# first), so the copies agree with their sources.
_INSERT_VERSIONS = """
INSERT INTO versions ({cols}, tags, parents)
SELECT {icols},
       coalesce(t.tags, MAP {{}}::MAP(VARCHAR, VARCHAR)), coalesce(p.parents, []::VARCHAR[])
FROM _cas_import i
LEFT JOIN (
    SELECT model_id, version, map_from_entries(list(struct_pack(k := key, v := value) ORDER BY key)) AS tags
    FROM tags WHERE model_id IN (SELECT DISTINCT model_id FROM _cas_import) GROUP BY model_id, version
) t ON t.model_id = i.model_id AND t.version = i.version
LEFT JOIN (
    SELECT model_id, version,
           list(parent_model || '@' || parent_version ORDER BY parent_model, parent_version) AS parents
    FROM lineage WHERE relation = 'parent' AND model_id IN (SELECT DISTINCT model_id FROM _cas_import)
    GROUP BY model_id, version
) p ON p.model_id = i.model_id AND p.version = i.version
"""


def bulk_import(s: Session, tables: Mapping[str, pa.Table]) -> dict[str, int]:
    """Insert ``tables`` (name -> Arrow table with exactly that table's columns) at once.

    All or nothing: one transaction. Afterwards each touched model's head row is derived
    from its versions and events (head = newest version; deleted = its last non-tag event
    is a delete), with the head table's cached copy of the head version. Objects already
    present are kept (the first location wins).

    Returns:
        Rows inserted per table.

    Raises:
        CatalogError: an unknown table, missing or extra columns, or a constraint
            violation such as a (model_id, version) that already exists.
    """
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise CatalogError(f"cannot bulk-import {sorted(unknown)}: importable tables are {sorted(TABLES)}")
    for name, table in tables.items():
        if set(table.column_names) != set(TABLES[name]):
            raise CatalogError(f"bulk import of {name}: columns {sorted(table.column_names)} "
                               f"must be exactly {sorted(TABLES[name])}")
    counts: dict[str, int] = {}
    con = s.con
    with s.transaction("a bulk import"):
        for name, columns in TABLES.items():
            if name not in tables:
                continue
            # Table and column names come from TABLES above, never from callers.
            cols = ", ".join(f'"{c}"' for c in columns)
            verb = "INSERT OR IGNORE" if name in ("objects", "packs") else "INSERT"
            con.register("_cas_import", tables[name])
            try:
                if name == "versions":
                    icols = ", ".join(f'i."{c}"' for c in columns)
                    con.execute(_INSERT_VERSIONS.format(cols=cols, icols=icols))
                else:
                    con.execute(f"{verb} INTO {name} ({cols}) SELECT {cols} FROM _cas_import")
            finally:
                con.unregister("_cas_import")
            counts[name] = tables[name].num_rows
        touched = [t.column("model_id") for n, t in tables.items() if n in ("versions", "events")]
        if touched:
            ids = pa.concat_arrays([col.combine_chunks().cast(pa.string()) for col in touched]).unique()
            con.register("_cas_touched", pa.table({"model_id": ids}))
            try:
                con.execute(_REFRESH_HEADS)
            finally:
                con.unregister("_cas_touched")
    return counts
