"""S3 figures, in one run: the client for small PUTs, then requests, bytes and time per save
of a rolling LightGBM history and of a large array model, on a loopback S3 server (moto)
beside the local folder backend.

    python -m tools.bench.s3            # full sizes (~2-4 min here)
    python -m tools.bench.s3 --quick    # small sizes (< 1 min)

The store ships obstore; pyarrow.fs is measured beside it, as the client it replaced.
Every S3 request goes to 127.0.0.1. Prints Markdown; ``--json FILE`` keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow
import pyarrow.fs as pafs

from cas_repo import ModelMetadata, ModelStore, allow_globals
from cas_repo.qlib_support import synthetic as syn
from tools.s3_servers import KEYS, MotoServer

BUCKET = "bench"
MiB = 1 << 20


def _md(model_id: str, i: int) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name="bench", model_type="LGBM",
                         hyperparameters={"round": i}, metrics={"IC": 0.01 * i},
                         created_at=datetime(2026, 1, 1), tags={})


def _fmt_counts(c: Counter[str], n: int = 1) -> str:
    return " + ".join(f"{c[m] / n:.3g} {m}" for m in ("HEAD", "GET", "PUT", "POST", "DELETE") if c[m]) or "0"


# -- clients -------------------------------------------------------------------------------


def bench_clients(server: MotoServer, n: int, size: int) -> list[dict[str, Any]]:
    """``n`` PUTs of ``size`` random bytes per client, each to a new key."""
    rows = []
    data = os.urandom(size)
    pyarrow_fs = {delayed: pafs.S3FileSystem(endpoint_override=server.endpoint, scheme="http",
                                             region="us-east-1", allow_bucket_creation=True,
                                             allow_delayed_open=delayed, **KEYS)
                  for delayed in (True, False)}
    pyarrow_fs[True].create_dir(BUCKET)

    def arrow_put(delayed: bool) -> Callable[[str], None]:
        def put(key: str) -> None:
            with pyarrow_fs[delayed].open_output_stream(f"{BUCKET}/{key}") as f:
                f.write(data)
        return put

    clients: list[tuple[str, Callable[[str], None]]] = [
        ("pyarrow.fs, allow_delayed_open=True (before obstore)", arrow_put(True)),
        ("pyarrow.fs, allow_delayed_open=False", arrow_put(False)),
    ]
    try:
        import obstore
        from obstore.store import S3Store

        store = S3Store(BUCKET, endpoint=f"http://{server.endpoint}", region="us-east-1",
                        access_key_id=KEYS["access_key"], secret_access_key=KEYS["secret_key"],
                        client_options={"allow_http": True})
        clients.append((f"obstore {obstore.__version__}, mode='create' (shipped)",
                        lambda key: obstore.put(store, key, data, mode="create")))
    except ImportError:
        rows.append({"client": "obstore", "note": "not installed"})
    for name, put in clients:
        tag = name.split(",")[0].replace(" ", "")
        mark = server.log_offset()
        t0 = time.perf_counter()
        for i in range(n):
            put(f"clients/{tag}/{size}/{len(rows)}/{i}")
        dt = time.perf_counter() - t0
        rows.append({"client": name, "puts": n, "size": size, "seconds": dt, "puts_per_s": n / dt,
                     "MB_per_s": n * size / dt / 1e6, "requests_per_put": _fmt_counts(server.requests_since(mark), n)})
    return rows


# -- stores --------------------------------------------------------------------------------


def _stores(server: MotoServer, tmp: Path) -> dict[str, Callable[[str], ModelStore]]:
    return {
        "local": lambda name: ModelStore(tmp / f"local-{name}"),
        "s3 (moto, loopback)": lambda name: ModelStore(
            f"s3://{BUCKET}/{name}", catalog=tmp / f"s3-{name}.duckdb",
            backend_options=server.options(allow_bucket_creation=True)),
    }


def _measure(server: MotoServer, store: ModelStore, fn: Callable[[], Any]) -> tuple[float, Counter[str], int]:
    before = store.stats().physical_bytes
    mark = server.log_offset()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    requests = server.requests_since(mark) if store.url.startswith("s3://") else Counter()
    return dt, requests, store.stats().physical_bytes - before


def bench_lgbm(server: MotoServer, tmp: Path, versions: int, resaves: int) -> list[dict[str, Any]]:
    """``versions`` LGBModels, each continued from the last (+10 trees), then ``resaves`` re-saves."""
    with contextlib.redirect_stdout(io.StringIO()):  # qlib prints which optional models it skips
        dataset = syn.make_dataset()
        models = [syn.train_lgbm(dataset)]
    for _ in range(versions - 1):
        models.append(syn.continue_training(models[-1], dataset, 10))
    rows = []
    for label, opener in _stores(server, tmp).items():
        with opener("lgbm") as store:
            saves, loads, reqs, nbytes = [], [], Counter(), 0
            for phase, seq in (("continued", models), ("unchanged re-save", [models[-1]] * resaves)):
                saves, reqs, nbytes = [], Counter(), 0
                for i, m in enumerate(seq):
                    dt, c, b = _measure(server, store, lambda m=m, i=i: store.save_model(m, _md("lgbm", i)))
                    saves.append(dt)
                    reqs += c
                    nbytes += b
                rows.append({"backend": label, "phase": phase, "saves": len(seq),
                             "save_ms_median": 1e3 * statistics.median(saves),
                             "requests_per_save": _fmt_counts(reqs, len(seq)) if label != "local" else "-",
                             "bytes_per_save": nbytes / len(seq)})
            loads, lreqs = [], Counter()
            for v in range(1, versions + 1):
                dt, c, _ = _measure(server, store, lambda v=v: store.load_model("lgbm", version=v))
                loads.append(dt)
                lreqs += c
            rows.append({"backend": label, "phase": "load each version", "saves": versions,
                         "save_ms_median": 1e3 * statistics.median(loads),
                         "requests_per_save": _fmt_counts(lreqs, versions) if label != "local" else "-",
                         "bytes_per_save": 0})
    return rows


def bench_arrays(server: MotoServer, tmp: Path, total: int) -> list[dict[str, Any]]:
    """A dict of float32 arrays of ``total`` bytes: first save, re-save, 1 % changed, load."""
    rng = np.random.default_rng(0)
    model = {f"w{i}": rng.standard_normal(total // 4 // 4, dtype=np.float32) for i in range(4)}
    changed = {k: v.copy() for k, v in model.items()}
    flat = changed["w0"]
    flat[: max(1, total // 4 // 100)] += 1.0  # 1 % of the bytes, in one array
    rows = []
    for label, opener in _stores(server, tmp).items():
        with opener("arrays") as store:
            steps = [("first save", lambda: store.save_model(model, _md("arrays", 0))),
                     ("unchanged re-save", lambda: store.save_model(model, _md("arrays", 1))),
                     ("1 % changed", lambda: store.save_model(changed, _md("arrays", 2))),
                     ("load (verified)", lambda: store.load_model("arrays", version=1))]
            for name, fn in steps:
                dt, c, b = _measure(server, store, fn)
                rows.append({"backend": label, "step": name, "seconds": dt, "MB_per_s": total / dt / 1e6,
                             "requests": _fmt_counts(c) if label != "local" else "-", "new_bytes": b})
    return rows


# -- report --------------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = p.parse_args(argv)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    # Continued boosters keep an _InnerPredictor, which loading must be allowed to rebuild.
    allow_globals("lightgbm.basic._InnerPredictor")
    n_small, versions, resaves, total = (200, 8, 3, 64 * MiB) if args.quick else (1000, 30, 10, 256 * MiB)
    with tempfile.TemporaryDirectory(prefix="cas-s3-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = MotoServer(tmp)
        try:
            results = {
                "clients_small": bench_clients(server, n_small, 16 << 10),
                "clients_large": bench_clients(server, 16 if not args.quick else 4, 8 * MiB),
                "lgbm_history": bench_lgbm(server, tmp, versions, resaves),
                "arrays": bench_arrays(server, tmp, total),
            }
        finally:
            server.stop()
    header = (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cpus, "
              f"Python {platform.python_version()}, pyarrow {pyarrow.__version__}, "
              f"command: python -m tools.bench.s3{' --quick' if args.quick else ''}")
    titles = {"clients_small": f"{n_small} PUTs of 16 KiB to new keys",
              "clients_large": "PUTs of 8 MiB (one pack each)",
              "lgbm_history": f"Rolling LightGBM history: {versions} versions (+10 trees each), "
                              f"{resaves} unchanged re-saves",
              "arrays": f"Array model of {total // MiB} MiB (4 float32 arrays)"}
    print(header)
    for key, rows in results.items():
        print(f"\n### {titles[key]}\n\n{_table(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"header": header, **results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
