"""Latency of the S3 backend's primitives on loopback servers: SeaweedFS and moto.

    python -m tools.bench.s3_primitives            # 300 repeats per figure (~1 min)
    python -m tools.bench.s3_primitives --quick    # 50 repeats
    python -m tools.bench.s3_primitives --json out.json

Each figure is the median (and 90th percentile) of one call of ``S3Backend`` — what the
store pays per request, Python included — after a few unmeasured warm-up calls. The
script starts both servers itself on 127.0.0.1 (``tools/s3_servers.py``) and stops them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import obstore

from cas_repo.digest import hash_bytes
from cas_repo.objects.keys import log_key, pack_key
from cas_repo.objects.s3 import S3Backend
from tools.s3_servers import MotoServer, SeaweedServer

BUCKET = "bench"
WARMUP = 10
SMALL, LARGE = 600, 300_000


def _times(fn: Callable[[int], Any], n: int) -> list[float]:
    """Seconds per call of ``fn(i)`` for i in 0..n-1, after WARMUP calls with negative i."""
    for i in range(-WARMUP, 0):
        fn(i)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def _figures(backend: S3Backend, n: int) -> dict[str, list[float]]:
    small = os.urandom(SMALL)
    base = WARMUP + 1  # log positions start at 1; warm-up calls use the first ones
    large = [os.urandom(LARGE) for _ in range(min(n, 50))]

    def create(i: int) -> None:
        assert backend.create(log_key(base + i), small)

    def refused(i: int) -> None:
        assert not backend.create(log_key(base + max(i, 0)), small)

    def put(i: int) -> None:
        data = large[i % len(large)][:-8] + i.to_bytes(8, "big", signed=True)  # a new key each time
        assert backend.put(pack_key(hash_bytes(data)), [data])

    def get(i: int) -> None:
        assert backend.get(log_key(base + max(i, 0))) is not None

    last = base + n - 1

    def list_after(count: int) -> Callable[[int], None]:
        def run(_: int) -> None:
            got = list(backend.list("log/", start_after=log_key(last - count)))
            assert len(got) == count
        return run

    return {
        "create-only PUT, 600 B (new key)": _times(create, n),
        "create-only PUT, 600 B (key exists: refused, then GET)": _times(refused, n),
        "PUT, 300 KB (new pack)": _times(put, n),
        "GET, 600 B": _times(get, n),
        "LIST log/ after the last key (0 keys)": _times(list_after(0), n),
        "LIST log/ after the 10th-last key (10 keys)": _times(list_after(10), n),
    }


def _row(name: str, by_server: dict[str, list[float]]) -> dict[str, Any]:
    row: dict[str, Any] = {"operation": name}
    for server, times in by_server.items():
        row[f"{server} median ms"] = 1e3 * statistics.median(times)
        row[f"{server} p90 ms"] = 1e3 * statistics.quantiles(times, n=10)[-1]
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="50 repeats per figure instead of 300")
    p.add_argument("--json", type=Path, help="also write every measured time here")
    args = p.parse_args(argv)
    n = 50 if args.quick else 300
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="cas-s3-primitives-") as tmp:
        for name, start in (("SeaweedFS", lambda: SeaweedServer(Path(tmp) / "seaweedfs", BUCKET)),
                            ("moto", lambda: MotoServer(Path(tmp)))):
            server = start()
            try:
                backend = S3Backend.from_url(f"s3://{BUCKET}/primitives",
                                             **server.options(allow_bucket_creation=True))
                for op, times in _figures(backend, n).items():
                    results.setdefault(op, {})[name] = times
            finally:
                server.stop()
    header = (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cpus, "
              f"Python {platform.python_version()}, obstore {obstore.__version__}, {n} calls per figure, "
              f"command: python -m tools.bench.s3_primitives{' --quick' if args.quick else ''}")
    print(header + "\n\n" + _table([_row(op, by) for op, by in results.items()]))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "seconds": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
