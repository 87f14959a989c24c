-- The catalog is an index over the object store: every row here can be rebuilt from the
-- manifests and event records in the packs (`cas-repo rebuild-catalog`).

-- One row per model_id: its newest version and whether it is tombstoned.
CREATE TABLE models (
    model_id        VARCHAR PRIMARY KEY,
    experiment_name VARCHAR NOT NULL,
    model_type      VARCHAR NOT NULL,
    head_version    INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    deleted         BOOLEAN NOT NULL DEFAULT false,
    updated_at      TIMESTAMP NOT NULL
);

-- One row per version; (model_id, version) is never reused or rewritten.
CREATE TABLE versions (
    model_id         VARCHAR NOT NULL,
    version          INTEGER NOT NULL,
    manifest         VARCHAR NOT NULL,
    record           VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,
    rollback_of      INTEGER,
    experiment_name  VARCHAR NOT NULL,
    model_type       VARCHAR NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    saved_at         TIMESTAMP NOT NULL,
    qlib_recorder_id VARCHAR,
    logical_size     BIGINT NOT NULL,
    new_bytes        BIGINT NOT NULL,
    metrics          MAP(VARCHAR, DOUBLE) NOT NULL,
    hyperparameters  JSON NOT NULL,
    lineage          JSON NOT NULL,
    metadata_json    VARCHAR NOT NULL,
    PRIMARY KEY (model_id, version)
);

-- Lineage edges: explicit parents and rollbacks.
CREATE TABLE lineage (
    model_id       VARCHAR NOT NULL,
    version        INTEGER NOT NULL,
    parent_model   VARCHAR NOT NULL,
    parent_version INTEGER NOT NULL,
    relation       VARCHAR NOT NULL,
    PRIMARY KEY (model_id, version, parent_model, parent_version, relation)
);

-- Current tags of each version (set at save time or by later tag events).
CREATE TABLE tags (
    model_id VARCHAR NOT NULL,
    version  INTEGER NOT NULL,
    key      VARCHAR NOT NULL,
    value    VARCHAR NOT NULL,
    PRIMARY KEY (model_id, version, key)
);

-- The append-only history: save, rollback, delete, undelete, tag.
CREATE TABLE events (
    model_id VARCHAR NOT NULL,
    seq      INTEGER NOT NULL,
    kind     VARCHAR NOT NULL,
    version  INTEGER NOT NULL,
    event_at TIMESTAMP NOT NULL,
    record   VARCHAR NOT NULL,
    PRIMARY KEY (model_id, seq)
);

-- Where every stored entry (chunk, manifest, record) lives.
CREATE TABLE objects (
    digest      VARCHAR PRIMARY KEY,
    kind        TINYINT NOT NULL,
    pack        VARCHAR NOT NULL,
    "offset"    BIGINT NOT NULL,
    stored_size BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    codec       TINYINT NOT NULL
);

-- The chunks of each manifest, in order (a chunk may repeat).
CREATE TABLE manifest_chunks (
    manifest VARCHAR NOT NULL,
    seq      INTEGER NOT NULL,
    chunk    VARCHAR NOT NULL,
    size     BIGINT NOT NULL,
    PRIMARY KEY (manifest, seq)
);

CREATE TABLE packs (
    pack       VARCHAR PRIMARY KEY,
    size       BIGINT NOT NULL,
    entries    INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);
