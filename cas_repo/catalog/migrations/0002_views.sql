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

-- A model's history and event log are read with one filter, model_id: DuckDB uses an
-- index only for a scan whose single filter is the indexed column (so composite keys'
-- indexes do not serve these reads), and only while few rows match.
CREATE INDEX versions_model_id ON versions (model_id);
CREATE INDEX events_model_id ON events (model_id);

-- Each version carries its current tags and its declared parents, so the versions view
-- is a plain scan (joining the tags and lineage tables cost ~2.5x on 1M versions). The
-- `tags` and `lineage` tables stay the source; these columns are kept equal to them.
ALTER TABLE versions ADD COLUMN tags MAP(VARCHAR, VARCHAR);
ALTER TABLE versions ADD COLUMN parents VARCHAR[];

UPDATE versions SET tags = t.tags
FROM (
    SELECT model_id, version, map_from_entries(list(struct_pack(k := key, v := value) ORDER BY key)) AS tags
    FROM tags GROUP BY model_id, version
) t
WHERE versions.model_id = t.model_id AND versions.version = t.version;

UPDATE versions SET parents = p.parents
FROM (
    SELECT model_id, version, list(parent_model || '@' || parent_version ORDER BY parent_model, parent_version) AS parents
    FROM lineage WHERE relation = 'parent' GROUP BY model_id, version
) p
WHERE versions.model_id = p.model_id AND versions.version = p.version;

UPDATE versions SET tags = MAP {}::MAP(VARCHAR, VARCHAR) WHERE tags IS NULL;
UPDATE versions SET parents = []::VARCHAR[] WHERE parents IS NULL;

-- The head table carries a copy of each head version, so `get_model_metadata(id)` and
-- `list_models()` read one row per model instead of joining 1M-row tables (a point query
-- here is ~0.6 ms at 100k models; the joins with tags and parents took ~5 ms). The
-- metadata is split into small JSON fields: parsing whole metadata documents was most
-- of list_models()'s time. NULL head_* columns mean "not cached": readers then join.
ALTER TABLE models ADD COLUMN head_manifest VARCHAR;
ALTER TABLE models ADD COLUMN head_kind VARCHAR;
ALTER TABLE models ADD COLUMN head_rollback_of INTEGER;
ALTER TABLE models ADD COLUMN head_saved_at TIMESTAMP;
ALTER TABLE models ADD COLUMN head_logical_size BIGINT;
ALTER TABLE models ADD COLUMN head_created_at VARCHAR;
ALTER TABLE models ADD COLUMN head_qlib_recorder_id VARCHAR;
ALTER TABLE models ADD COLUMN head_hyperparameters VARCHAR;
ALTER TABLE models ADD COLUMN head_metrics VARCHAR;
ALTER TABLE models ADD COLUMN head_lineage VARCHAR;
ALTER TABLE models ADD COLUMN head_tags MAP(VARCHAR, VARCHAR);
ALTER TABLE models ADD COLUMN head_parents VARCHAR[];

UPDATE models SET
    head_manifest = v.manifest, head_kind = v.kind, head_rollback_of = v.rollback_of,
    head_saved_at = v.saved_at, head_logical_size = v.logical_size,
    head_created_at = v.metadata_json::JSON ->> 'created_at',
    head_qlib_recorder_id = v.qlib_recorder_id,
    head_hyperparameters = (v.metadata_json::JSON -> 'hyperparameters')::VARCHAR,
    head_metrics = (v.metadata_json::JSON -> 'metrics')::VARCHAR,
    head_lineage = coalesce((v.metadata_json::JSON -> 'lineage')::VARCHAR, '{}'),
    head_tags = v.tags, head_parents = v.parents
FROM versions v
WHERE v.model_id = models.model_id AND v.version = models.head_version;

-- One row per version (saves and rollbacks). `parent` is the first declared parent.
CREATE VIEW v_versions AS
SELECT
    model_id,
    version,
    kind,
    rollback_of,
    experiment_name,
    model_type,
    created_at,
    saved_at,
    manifest AS digest,
    logical_size,
    new_bytes,
    metrics,
    hyperparameters,
    coalesce(tags, MAP {}::MAP(VARCHAR, VARCHAR)) AS tags,
    coalesce(parents, []::VARCHAR[]) AS parents,
    parents[1] AS parent,
    qlib_recorder_id,
    record
FROM versions;

-- One row per model_id: its head (newest) version and whether it is tombstoned.
-- `load_model(model_id)` returns the head unless `deleted`.
CREATE VIEW v_models AS
SELECT
    model_id,
    experiment_name,
    model_type,
    head_version,
    deleted,
    updated_at,
    last_seq AS events,
    head_manifest AS digest,
    head_saved_at AS saved_at,
    head_logical_size AS logical_size,
    coalesce(head_tags, MAP {}::MAP(VARCHAR, VARCHAR)) AS tags
FROM models;

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
