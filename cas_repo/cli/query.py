"""SQL commands: ``sql`` (one read-only query, as a table, CSV, JSON or Parquet) and ``export``."""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import TYPE_CHECKING, Any

from .render import Output, human_bytes

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")
_PARQUET_NEEDS_OUT = "--format parquet needs --out FILE"


def _cell(v: Any) -> Any:
    return "[" + ", ".join(str(x) for x in v) + "]" if isinstance(v, list) else v


def write_table(table: pa.Table, fmt: str, out: Output, path: str | None) -> None:
    """Render ``table`` as ``fmt`` to ``path`` (or stdout; Parquet needs a path)."""
    # Here, not at the top: every cas-repo command imports this module to register `sql`.
    from ..catalog.tables import csv_bytes, rows_of, write_parquet

    if fmt == "parquet":
        if path is None:  # Parquet is binary: never onto a terminal's text stream
            from . import UsageError

            raise UsageError(_PARQUET_NEEDS_OUT)
        write_parquet(table, path)
        return
    if fmt == "table":
        rows = rows_of(table)
        buf = io.StringIO()
        Output(buf, sys.stderr).table(table.column_names, [[_cell(v) for v in r.values()] for r in rows])
        text = buf.getvalue() + f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})\n"
    elif fmt == "json":
        text = json.dumps(rows_of(table), indent=2, sort_keys=False, default=str) + "\n"
    else:
        text = csv_bytes(table).decode("utf-8")
    if path is None:
        out.stdout.write(text)
    else:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)


def cmd_sql(args: argparse.Namespace, out: Output) -> int:
    from . import UsageError, open_store

    fmt = "json" if out.json_mode and args.format is None else (args.format or "table")
    if fmt == "parquet" and not args.out:
        raise UsageError(_PARQUET_NEEDS_OUT)
    try:
        params = json.loads(args.params) if args.params else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--params is not valid JSON: {exc}") from exc
    if params is not None and not isinstance(params, (list, dict)):
        raise UsageError("--params is a JSON list (for ?) or object (for $name)")
    with open_store(args) as store:
        table = store.sql(args.query, params)
    try:
        write_table(table, fmt, out, args.out)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    if args.out and not out.json_mode:
        out.stderr.write(f"wrote {table.num_rows} rows to {args.out}\n")
    return 0


def cmd_export(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    with open_store(args) as store:
        report = store.export(args.directory)
    if out.json_mode:
        out.json(report)
        return 0
    out.table(["view", "rows"], [[v, n] for v, n in report.rows.items()])
    out.line(f"wrote {len(report.rows)} Parquet files ({human_bytes(report.bytes)}) to {report.directory}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sql", help="run one read-only SQL query over the catalog views (docs/sql.md)")
    p.add_argument("query", metavar="SQL")
    p.add_argument("--format", choices=FORMATS, help="output format (default: table; json with --json)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--params", metavar="JSON", help="bound parameters: a JSON list for ?, object for $name")
    p.set_defaults(handler=cmd_sql)

    p = sub.add_parser("export", help="write every catalog view as Parquet into DIR "
                                      "(tables, not models: `get` writes a model)")
    p.add_argument("directory", metavar="DIR")
    p.set_defaults(handler=cmd_export)
