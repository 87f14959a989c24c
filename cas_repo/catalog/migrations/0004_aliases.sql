-- Aliases: named, movable pointers (model_id, alias) -> version. Every move is a log
-- operation; this table holds them all, in log order (log_position, op_index).
-- from_version NULL: the alias was new; to_version NULL: it was removed.
CREATE TABLE alias_moves (
    log_position BIGINT NOT NULL,
    op_index     INTEGER NOT NULL,
    model_id     VARCHAR NOT NULL,
    alias        VARCHAR NOT NULL,
    from_version INTEGER,
    to_version   INTEGER,
    moved_at     TIMESTAMP NOT NULL,
    moved_by     VARCHAR NOT NULL,
    PRIMARY KEY (log_position, op_index)
);

CREATE INDEX alias_moves_by_alias ON alias_moves (model_id, alias);

-- Every alias move, oldest first per alias: who moved it, when, from which version to which.
CREATE VIEW v_alias_history AS
SELECT model_id, alias, from_version, to_version, moved_at, moved_by, log_position
FROM alias_moves;

-- Aliases as they stand: one row per set alias and the version it points at.
CREATE VIEW v_aliases AS
SELECT model_id, alias, to_version AS version, moved_at, moved_by
FROM (
    SELECT *, row_number() OVER (PARTITION BY model_id, alias ORDER BY log_position DESC, op_index DESC) AS newest
    FROM alias_moves
)
WHERE newest = 1 AND to_version IS NOT NULL;

-- Aliases as they stood at time `ts` (inclusive): which version `prod` was then.
CREATE MACRO aliases_as_of(ts) AS TABLE
SELECT model_id, alias, to_version AS version, moved_at, moved_by
FROM (
    SELECT *, row_number() OVER (PARTITION BY model_id, alias ORDER BY log_position DESC, op_index DESC) AS newest
    FROM alias_moves WHERE moved_at <= ts
)
WHERE newest = 1 AND to_version IS NOT NULL;
