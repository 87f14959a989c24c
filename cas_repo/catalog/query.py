"""Users' SQL over the catalog views: read-only queries and Parquet exports.

A query is refused unless DuckDB's own parser finds exactly one SELECT-type statement
(SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, PIVOT, UNPIVOT). It then runs on a read-only
connection with file access and extension loading disabled (``Catalog.reader``), inside
a transaction that is always rolled back: three independent reasons a write cannot land.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import QueryError, ReadOnlyQueryError, StoreError
from .values import ExportReport

# The documented views (docs/sql.md), in export order.
VIEWS = (
    "v_models", "v_versions", "v_events", "v_tags", "v_tag_events", "v_lineage", "v_metrics",
    "v_hyperparameters", "v_objects", "v_manifest_chunks", "v_packs",
    "v_aliases", "v_alias_history", "v_metric_history", "v_policy_history",
)
EXPORT_INFO = "export.json"

Params = Sequence[Any] | Mapping[str, Any] | None


# DuckDB parses a PIVOT without an explicit `IN (...)` list as a MULTI statement: a
# temporary ENUM of the pivoted column's values, then the SELECT that uses it. Its parser
# makes MULTI statements for nothing else, so a MULTI whose text starts as a query is one.
_QUERY_KEYWORDS = frozenset({"select", "with", "from", "pivot", "unpivot", "pivot_wider", "pivot_longer"})


def _is_dynamic_pivot(statement: duckdb.Statement) -> bool:
    if statement.type != duckdb.StatementType.MULTI:
        return False
    text = statement.query
    for start, kind in duckdb.tokenize(text):
        if kind == duckdb.token_type.comment:
            continue
        # tokenize gives start offsets only; the keyword runs to the next non-letter
        word = re.match(r"[A-Za-z_]+", text[start:])
        return kind == duckdb.token_type.keyword and word is not None and word.group().lower() in _QUERY_KEYWORDS
    return False


def _refuse(kind: str) -> ReadOnlyQueryError:
    return ReadOnlyQueryError(
        f"refused a {kind} statement: cas-repo SQL is read-only (one SELECT, WITH, FROM, "
        "VALUES, DESCRIBE, SHOW, SUMMARIZE or PIVOT query); change the store through its API or "
        "CLI, and use `cas-repo export DIR` for a copy you can write to")


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.Statement:
    """The one SELECT-type statement in ``query``, parsed by DuckDB itself.

    Raises:
        ReadOnlyQueryError: several statements, or one that is not a SELECT.
        QueryError: ``query`` is not valid SQL or is empty.
    """
    if not isinstance(query, str):
        raise QueryError(f"a query is a string, got {type(query).__name__}")
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"the query is not valid SQL: {exc}") from exc
    if not statements:
        raise QueryError("the query is empty")
    if len(statements) > 1:
        kinds = ", ".join(s.type.name for s in statements)
        raise ReadOnlyQueryError(
            f"refused {len(statements)} statements ({kinds}): send one SELECT query at a time")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT and not _is_dynamic_pivot(statement):
        raise _refuse(statement.type.name)
    return statement


def _bind(params: Params) -> Any:
    if params is None:
        return None
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise QueryError("params are a list of values for `?` or a dict for `$name` placeholders")
    return list(params)


def run_query(con: duckdb.DuckDBPyConnection, query: str, params: Params = None) -> pa.Table:
    """Run one read-only query on a ``Catalog.reader`` connection; returns an Arrow table.

    Raises:
        ReadOnlyQueryError: the query would write or change the session.
        QueryError: the query is malformed, names an unknown column or view, or fails.
    """
    statement = check_read_only(con, query)
    bound = _bind(params)
    con.begin()
    try:
        return con.sql(statement, params=bound).to_arrow_table()
    except duckdb.PermissionException as exc:
        raise ReadOnlyQueryError(f"refused: {exc}") from exc
    except duckdb.Error as exc:
        if "read-only" in str(exc):
            raise ReadOnlyQueryError(f"refused: {exc}") from exc
        raise QueryError(f"the query failed: {exc}") from exc
    finally:
        con.rollback()


def export_views(con: duckdb.DuckDBPyConnection, directory: Path,
                 batch_rows: int = 256 * 1024) -> ExportReport:
    """Write every view as ``<view>.parquet`` under ``directory``, from one snapshot.

    Files are written beside their final names and renamed into place, so a reader never
    sees half a file; ``export.json`` names the views, row counts and time.

    Raises:
        StoreError: the directory cannot be written.
    """
    exported_at = datetime.now(UTC)
    rows: dict[str, int] = {}
    total = 0
    try:
        directory.mkdir(parents=True, exist_ok=True)
        con.begin()  # one transaction: every view sees the same catalog state
        try:
            for view in VIEWS:
                # `view` comes from VIEWS above, never from a caller.
                reader = con.sql(f"SELECT * FROM {view}").to_arrow_reader(batch_rows)
                final = directory / f"{view}.parquet"
                temp = directory / f".{view}.parquet.tmp"
                count = 0
                with pq.ParquetWriter(temp, reader.schema, compression="zstd") as writer:
                    for batch in reader:
                        writer.write_batch(batch)
                        count += batch.num_rows
                os.replace(temp, final)
                rows[view] = count
                total += final.stat().st_size
        finally:
            con.rollback()
        info = {"format": "cas-repo/export/1", "exported_at": exported_at.isoformat(), "rows": rows}
        (directory / EXPORT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise StoreError(f"exporting to {directory} failed: {exc}") from exc
    except duckdb.Error as exc:
        raise QueryError(f"exporting the catalog failed: {exc}") from exc
    return ExportReport(str(directory), exported_at, rows, total)
