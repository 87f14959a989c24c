-- The catalog is an index derived from the store's log: which store it indexes and the
-- last commit folded in. One row; the catalog catches up from `position` before a query.
CREATE TABLE log_index (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    store_id VARCHAR NOT NULL,
    position BIGINT NOT NULL
);
