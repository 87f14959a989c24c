-- Who did what, and metrics that arrive after a save.

-- One row per log commit: who made it. `author` is the person (CAS_REPO_USER, else the
-- OS user; NULL for a commit written before commits named one), `writer` the process
-- (`host/pid/token`).
CREATE TABLE commits (
    position BIGINT PRIMARY KEY,
    author   VARCHAR,
    writer   VARCHAR NOT NULL
);

-- Each event names the commit that made it.
ALTER TABLE events ADD COLUMN log_position BIGINT;

-- Metric values logged after a save (event kind 'metrics'), one row per value; nothing
-- here is ever updated: a later value of a name supersedes an earlier one by `seq`.
CREATE TABLE metric_log (
    model_id VARCHAR NOT NULL,
    seq      INTEGER NOT NULL,
    version  INTEGER NOT NULL,
    metric   VARCHAR NOT NULL,
    value    DOUBLE NOT NULL,
    PRIMARY KEY (model_id, seq, metric)
);

-- The newest logged value of each metric of a version (kept equal to `metric_log`), and
-- the head table's copy of the head version's.
ALTER TABLE versions ADD COLUMN logged MAP(VARCHAR, DOUBLE);
ALTER TABLE models ADD COLUMN head_logged MAP(VARCHAR, DOUBLE);

-- The event log: save, rollback, delete, undelete, tag, metrics, retire, restore, purge;
-- with the commit that recorded each one and who made it.
DROP VIEW v_events;
CREATE VIEW v_events AS
SELECT e.model_id, e.seq, e.kind, e.version, e.event_at, e.record, c.author,
       split_part(c.writer, '/', 1) AS host, e.log_position
FROM events e LEFT JOIN commits c ON c.position = e.log_position;

-- Each version's metrics now, one row per (version, metric): the saved values, superseded
-- by any value logged later.
DROP VIEW v_metrics;
CREATE VIEW v_metrics AS
SELECT model_id, version, experiment_name, model_type, e.key AS metric, e.value
FROM versions,
     unnest(map_entries(map_concat(metrics, coalesce(logged, MAP {}::MAP(VARCHAR, DOUBLE))))) AS u(e);

-- Versions with their metrics now (saved, superseded by any value logged later).
DROP VIEW v_versions;
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
    map_concat(metrics, coalesce(logged, MAP {}::MAP(VARCHAR, DOUBLE))) AS metrics,
    hyperparameters,
    coalesce(tags, MAP {}::MAP(VARCHAR, VARCHAR)) AS tags,
    coalesce(parents, []::VARCHAR[]) AS parents,
    parents[1] AS parent,
    qlib_recorder_id,
    record
FROM versions;

-- Every metric value ever recorded: at the save (`source` 'save') and each one logged
-- afterwards ('log'), with when it arrived and who recorded it.
CREATE VIEW v_metric_history AS
SELECT v.model_id, v.version, u.kv.key AS metric, u.kv.value, 'save' AS source, e.event_at AS recorded_at,
       c.author, e.seq
FROM versions v
JOIN events e ON e.model_id = v.model_id AND e.version = v.version AND e.kind IN ('save', 'rollback')
LEFT JOIN commits c ON c.position = e.log_position,
unnest(map_entries(v.metrics)) AS u(kv)
UNION ALL
SELECT m.model_id, m.version, m.metric, m.value, 'log' AS source, e.event_at AS recorded_at, c.author, m.seq
FROM metric_log m
JOIN events e ON e.model_id = m.model_id AND e.seq = m.seq
LEFT JOIN commits c ON c.position = e.log_position;

-- Each version's metrics as they stood at time `ts` (inclusive): a value logged later is
-- not there yet.
CREATE MACRO metrics_as_of(ts) AS TABLE
SELECT model_id, version, metric, arg_max(value, seq) AS value
FROM v_metric_history
WHERE recorded_at <= ts
GROUP BY model_id, version, metric;

-- Alias moves with the person who made each one (`moved_by` is the writing process).
DROP VIEW v_alias_history;
CREATE VIEW v_alias_history AS
SELECT a.model_id, a.alias, a.from_version, a.to_version, a.moved_at, a.moved_by, a.log_position, c.author
FROM alias_moves a LEFT JOIN commits c ON c.position = a.log_position;

DROP VIEW v_aliases;
CREATE VIEW v_aliases AS
SELECT model_id, alias, to_version AS version, moved_at, moved_by, author
FROM (
    SELECT a.*, c.author,
           row_number() OVER (PARTITION BY a.model_id, a.alias ORDER BY a.log_position DESC, a.op_index DESC) AS newest
    FROM alias_moves a LEFT JOIN commits c ON c.position = a.log_position
)
WHERE newest = 1 AND to_version IS NOT NULL;

DROP MACRO TABLE aliases_as_of;
CREATE MACRO aliases_as_of(ts) AS TABLE
SELECT model_id, alias, to_version AS version, moved_at, moved_by, author
FROM (
    SELECT a.*, c.author,
           row_number() OVER (PARTITION BY a.model_id, a.alias ORDER BY a.log_position DESC, a.op_index DESC) AS newest
    FROM alias_moves a LEFT JOIN commits c ON c.position = a.log_position WHERE a.moved_at <= ts
)
WHERE newest = 1 AND to_version IS NOT NULL;

-- An index made before this migration knows no authors: empty it, so the next session
-- folds the store's log into it again (the log holds every commit's author).
DELETE FROM event_tags;
DELETE FROM events;
DELETE FROM tags;
DELETE FROM lineage;
DELETE FROM versions;
DELETE FROM models;
DELETE FROM manifest_chunks;
DELETE FROM objects;
DELETE FROM packs;
DELETE FROM alias_moves;
DELETE FROM log_index;
