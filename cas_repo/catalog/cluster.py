"""Keeping the versions table in (model_id, version) order, and reading it that way.

The fold appends versions in log order, so at 1M versions the 1,000 rows of one model
lie in every row group, and DuckDB fetches them one by one through the model_id index
(~60 ms for a 1,000-version history, ~35 ms even with the rows in model order). With
the rows in model order and the index kept out of the query, DuckDB reads only the row
group whose min/max admit the model (~15 ms). The index stays the better path for a
model of a few versions (~1.5 against ~2.7 ms), so readers pick by the model's count.

Rows folded after the last rewrite form a tail in log order that every scan by min/max
reads in full (~8 ms per 100,000 rows at 1M): the catalog rewrites the table once the
tail reaches :data:`CLUSTER_TAIL` rows, after a catch-up (~7.5–10 s at 1M rows).
"""

from __future__ import annotations

from ..errors import CatalogError
from .catalog import Session

# Unordered rows that make the next catch-up rewrite the table in model order.
CLUSTER_TAIL = 32_768

def unclustered_rows(s: Session) -> int:
    """Rows of ``versions`` appended since the table was last put in model order."""
    (rows, clustered), = s.rows("SELECT (SELECT count(*) FROM versions), "
                                "(SELECT coalesce(max(clustered_rows), 0) FROM versions_layout)")
    return max(int(rows) - int(clustered), 0)


def cluster_versions(s: Session) -> int:
    """Rewrite ``versions`` in (model_id, version) order, in one transaction; its row count.

    The new table is made from the old one's own definition (every column and constraint
    the migrations gave it) and takes its name and index; views name the table, not its
    storage, so they read the new one.
    """
    with s.transaction("putting the versions table in model order"):
        (ddl,), = s.rows("SELECT sql FROM duckdb_tables() WHERE table_name = 'versions' "
                         "AND database_name = current_database() AND schema_name = 'main'")
        head, sep, rest = ddl.partition("(")
        if not sep or not head.rstrip().endswith("versions"):
            raise CatalogError(f"the versions table has a definition this cas-repo does not know ({ddl[:80]}); "
                               "delete the index and retry (it is rebuilt from the log)")
        s.rows(head.rstrip().removesuffix("versions") + "versions_ordered(" + rest)
        s.rows("INSERT INTO versions_ordered SELECT * FROM versions ORDER BY model_id, version")
        s.rows("DROP INDEX IF EXISTS versions_model_id")
        s.rows("DROP TABLE versions")
        s.rows("ALTER TABLE versions_ordered RENAME TO versions")
        s.rows("CREATE INDEX versions_model_id ON versions (model_id)")
        (rows,), = s.rows("SELECT count(*) FROM versions")
        s.rows("UPDATE versions_layout SET clustered_rows = ?", [rows])
    return int(rows)


def keep_clustered(s: Session, tail: int | None = None) -> bool:
    """Rewrite the table in model order if its unordered tail reached ``tail`` rows
    (default :data:`CLUSTER_TAIL`); whether it did."""
    if unclustered_rows(s) < (CLUSTER_TAIL if tail is None else tail):
        return False
    cluster_versions(s)
    return True

