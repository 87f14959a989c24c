"""``write_table``, which the ``sql`` command and tools/sql_demo_store.py render results with."""

from __future__ import annotations

import io
import sys

import pyarrow as pa
import pytest

from cas_repo.cli import UsageError
from cas_repo.cli.query import write_table
from cas_repo.cli.render import Output


def test_parquet_without_a_path_is_a_usage_error():
    # It once reached pyarrow as a None target: TypeError, a traceback instead of exit code 2.
    with pytest.raises(UsageError, match="--format parquet needs --out FILE"):
        write_table(pa.table({"a": [1]}), "parquet", Output(io.StringIO(), sys.stderr), None)


def test_parquet_with_a_path_is_written(tmp_path):
    import pyarrow.parquet as pq

    write_table(pa.table({"a": [1, 2]}), "parquet", Output(io.StringIO(), sys.stderr), str(tmp_path / "t.parquet"))
    assert pq.read_table(tmp_path / "t.parquet").column("a").to_pylist() == [1, 2]
