-- The views users query (docs/sql.md): they are the stable contract, the tables are not.
-- All times are UTC (naive TIMESTAMP). Digests are lowercase BLAKE3-256 hex.

-- Tags as they were set by each event, so tags can be read as of any time. A save or
-- rollback records the tags it was given; a tag event records each key it set, with
-- value NULL for a key it removed.
CREATE TABLE event_tags (
    model_id VARCHAR NOT NULL,
    seq      INTEGER NOT NULL,
    version  INTEGER NOT NULL,
    key      VARCHAR NOT NULL,
    value    VARCHAR,
    PRIMARY KEY (model_id, seq, key)
);

-- Saves recorded before this table existed still carry their tags in their metadata;
-- earlier tag events did not record what they set (their current effect is in `tags`).
INSERT INTO event_tags
SELECT e.model_id, e.seq, e.version, t.key, t.value ->> '$'
FROM events e
JOIN versions v ON v.model_id = e.model_id AND v.version = e.version
CROSS JOIN json_each(v.metadata_json::JSON -> 'tags') AS t
WHERE e.kind IN ('save', 'rollback');

-- Every point lookup (head, history, tags and parents of a model) filters on model_id
-- alone; DuckDB only uses an index for a filter on all of its columns.
CREATE INDEX versions_model_id ON versions (model_id);
CREATE INDEX tags_model_id ON tags (model_id);
CREATE INDEX lineage_model_id ON lineage (model_id);
CREATE INDEX events_model_id ON events (model_id);

-- One row per version (saves and rollbacks), newest facts joined in.
CREATE VIEW v_versions AS
SELECT
    v.model_id,
    v.version,
    v.kind,
    v.rollback_of,
    v.experiment_name,
    v.model_type,
    v.created_at,
    v.saved_at,
    v.manifest AS digest,
    v.logical_size,
    v.new_bytes,
    v.metrics,
    v.hyperparameters,
    coalesce(t.tags, MAP {}::MAP(VARCHAR, VARCHAR)) AS tags,
    coalesce(p.parents, []::VARCHAR[]) AS parents,
    p.parents[1] AS parent,
    v.qlib_recorder_id,
    v.version = m.head_version AS is_head,
    m.deleted AS model_deleted,
    v.record
FROM versions v
JOIN models m ON m.model_id = v.model_id
LEFT JOIN (
    SELECT model_id, version, map_from_entries(list(struct_pack(k := key, v := value) ORDER BY key)) AS tags
    FROM tags GROUP BY model_id, version
) t ON t.model_id = v.model_id AND t.version = v.version
LEFT JOIN (
    SELECT model_id, version, list(parent_model || '@' || parent_version ORDER BY parent_model, parent_version) AS parents
    FROM lineage WHERE relation = 'parent' GROUP BY model_id, version
) p ON p.model_id = v.model_id AND p.version = v.version;

-- One row per model_id: its head (newest) version and whether it is tombstoned.
-- `load_model(model_id)` returns the head unless `deleted`.
CREATE VIEW v_models AS
SELECT
    m.model_id,
    m.experiment_name,
    m.model_type,
    m.head_version,
    m.deleted,
    m.updated_at,
    m.head_version AS versions,
    m.last_seq AS events,
    v.manifest AS digest,
    v.created_at,
    v.saved_at,
    v.logical_size,
    v.metrics,
    v.hyperparameters
FROM models m
JOIN versions v ON v.model_id = m.model_id AND v.version = m.head_version;

-- Lineage edges: `relation` is 'parent' (declared at save) or 'rollback_of'.
CREATE VIEW v_lineage AS
SELECT model_id, version, parent_model, parent_version, relation FROM lineage;

-- Current tags, one row per (version, key).
CREATE VIEW v_tags AS
SELECT model_id, version, key, value FROM tags;

-- The append-only event log: save, rollback, delete, undelete, tag.
CREATE VIEW v_events AS
SELECT model_id, seq, kind, version, event_at, record FROM events;

-- What each event did to tags (value NULL: the key was removed).
CREATE VIEW v_tag_events AS
SELECT t.model_id, t.seq, t.version, e.event_at, e.kind, t.key, t.value
FROM event_tags t JOIN events e ON e.model_id = t.model_id AND e.seq = t.seq;

-- Metrics in long form, one row per (version, metric).
CREATE VIEW v_metrics AS
SELECT model_id, version, experiment_name, model_type, e.key AS metric, e.value
FROM versions, unnest(map_entries(metrics)) AS u(e);

-- Hyperparameters in long form: the JSON value, and as a number or text where it is one.
CREATE VIEW v_hyperparameters AS
SELECT
    v.model_id,
    v.version,
    h.key AS name,
    h.value AS value,
    CASE WHEN h.type IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN h.value::DOUBLE END AS value_double,
    CASE WHEN h.type = 'VARCHAR' THEN h.value ->> '$'
         WHEN h.type IN ('OBJECT', 'ARRAY') THEN NULL ELSE h.value::VARCHAR END AS value_text
FROM versions v, json_each(v.hyperparameters) AS h;

-- Every stored entry and where it lives.
CREATE VIEW v_objects AS
SELECT
    digest,
    CASE kind WHEN 0 THEN 'chunk' WHEN 1 THEN 'manifest' WHEN 2 THEN 'record' ELSE 'unknown' END AS kind,
    pack,
    "offset",
    stored_size,
    size,
    CASE codec WHEN 0 THEN 'raw' WHEN 1 THEN 'zstd' ELSE 'unknown' END AS codec
FROM objects;

-- The chunks each manifest lists, in order (a chunk may repeat).
CREATE VIEW v_manifest_chunks AS
SELECT manifest AS digest, seq, chunk, size FROM manifest_chunks;

CREATE VIEW v_packs AS
SELECT pack, size, entries, created_at FROM packs;

-- Time travel: the state of every model at time `ts` (inclusive), replayed from events.
-- `version` is the newest version saved by then; `loaded_version` is what load_model
-- returned then (NULL while the model was tombstoned). Models created later are absent.
CREATE MACRO models_as_of(ts) AS TABLE
SELECT
    model_id,
    max(version) FILTER (WHERE kind IN ('save', 'rollback')) AS version,
    arg_max(kind, seq) FILTER (WHERE kind <> 'tag') = 'delete' AS deleted,
    CASE WHEN arg_max(kind, seq) FILTER (WHERE kind <> 'tag') = 'delete' THEN NULL
         ELSE max(version) FILTER (WHERE kind IN ('save', 'rollback')) END AS loaded_version,
    max(seq) AS last_seq,
    max(event_at) AS last_event_at
FROM events
WHERE event_at <= ts
GROUP BY model_id;

-- Tags as they stood at time `ts`, one row per (version, key).
CREATE MACRO tags_as_of(ts) AS TABLE
SELECT model_id, version, key, value
FROM (
    SELECT t.model_id, t.version, t.key, arg_max_null(t.value, t.seq) AS value
    FROM event_tags t JOIN events e ON e.model_id = t.model_id AND e.seq = t.seq
    WHERE e.event_at <= ts
    GROUP BY t.model_id, t.version, t.key
)
WHERE value IS NOT NULL;

-- Ancestors of a version through parent and rollback edges, nearest first. `depth` is
-- the shortest number of edges; a path never revisits a version, so cycles end.
CREATE MACRO lineage_ancestors(of_model, of_version) AS TABLE
WITH RECURSIVE walk(model_id, version, depth, relation, path) AS (
    SELECT parent_model, parent_version, 1, relation,
           [of_model || '@' || of_version, parent_model || '@' || parent_version]
    FROM lineage WHERE model_id = of_model AND version = of_version
    UNION ALL
    SELECT l.parent_model, l.parent_version, w.depth + 1, l.relation,
           list_append(w.path, l.parent_model || '@' || l.parent_version)
    FROM walk w JOIN lineage l ON l.model_id = w.model_id AND l.version = w.version
    WHERE NOT list_contains(w.path, l.parent_model || '@' || l.parent_version)
)
SELECT model_id, version, min(depth) AS depth, arg_min(relation, depth) AS relation
FROM walk GROUP BY model_id, version
ORDER BY depth, model_id, version;

-- Descendants of a version: everything whose ancestry reaches it, nearest first.
CREATE MACRO lineage_descendants(of_model, of_version) AS TABLE
WITH RECURSIVE walk(model_id, version, depth, relation, path) AS (
    SELECT model_id, version, 1, relation,
           [of_model || '@' || of_version, model_id || '@' || version]
    FROM lineage WHERE parent_model = of_model AND parent_version = of_version
    UNION ALL
    SELECT l.model_id, l.version, w.depth + 1, l.relation,
           list_append(w.path, l.model_id || '@' || l.version)
    FROM walk w JOIN lineage l ON l.parent_model = w.model_id AND l.parent_version = w.version
    WHERE NOT list_contains(w.path, l.model_id || '@' || l.version)
)
SELECT model_id, version, min(depth) AS depth, arg_min(relation, depth) AS relation
FROM walk GROUP BY model_id, version
ORDER BY depth, model_id, version;
