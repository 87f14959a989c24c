-- How many rows of `versions` were in (model_id, version) order when the table was last
-- rewritten in that order (`catalog/cluster.py`); rows folded in since then follow them
-- in log order. DuckDB skips row groups by their min/max, which only helps where a
-- model's rows sit together, so a long history is read from one row group, not 1,000.
CREATE TABLE versions_layout (
    clustered_rows BIGINT NOT NULL
);
INSERT INTO versions_layout VALUES (0);
