"""Query results (Arrow tables) as plain rows, CSV or Parquet: for the CLI and the web view."""

from __future__ import annotations

import io
import json
from datetime import date, datetime
from typing import Any, BinaryIO

import pyarrow as pa


def plain(value: Any, typ: pa.DataType) -> Any:
    """An Arrow value as plain Python: maps become dicts, times ISO text."""
    if value is None:
        return None
    if pa.types.is_map(typ):
        return {k: plain(v, typ.item_type) for k, v in value}
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return [plain(v, typ.value_type) for v in value]
    if pa.types.is_struct(typ):
        return {f.name: plain(value[f.name], f.type) for f in typ}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """Each row as a dict of plain values, column order kept."""
    fields = list(table.schema)
    return [{f.name: plain(r[f.name], f.type) for f in fields} for r in table.to_pylist()]


def csv_bytes(table: pa.Table) -> bytes:
    """The table as UTF-8 CSV; nested columns (maps, lists, structs) as JSON text."""
    import pyarrow.csv as pacsv

    cols: list[pa.Array | pa.ChunkedArray] = []
    for f, col in zip(table.schema, table.columns):
        if pa.types.is_nested(f.type):
            cols.append(pa.array([None if v is None else json.dumps(plain(v, f.type), sort_keys=True)
                                  for v in col.to_pylist()], pa.string()))
        else:
            cols.append(col)
    sink = io.BytesIO()
    pacsv.write_csv(pa.table(cols, names=table.column_names), sink)
    return sink.getvalue()


def write_parquet(table: pa.Table, where: str | BinaryIO) -> None:
    """The table as a zstd-compressed Parquet file at a path or into a binary file."""
    import pyarrow.parquet as pq

    pq.write_table(table, where, compression="zstd")
