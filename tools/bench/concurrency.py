"""Several processes saving small models into one store at once (shared mode)."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

from .framework import Result, Timing, relative_to, scratch

TITLE = "Concurrency: processes saving at once"
ABOUT = (
    "Processes started together (a barrier) each save small models (a ~100 KB float32 array "
    "and a few params, different every time) under their own model_id into one store in "
    "the default shared mode, where every save takes the catalog's file lock and opens "
    "DuckDB. Throughput is all saves divided by the wall time from the barrier to the "
    "last save; every acknowledged version is checked to exist afterwards.")

WORKERS = 4
WHY_LATENCY = ("a save holds the catalog's file lock through its DuckDB open, statements and "
               "close, so saves from several processes run one at a time; a waiter polls with "
               "a back-off of up to 20 ms, so it can lose the lock to a process that releases "
               "and retakes it several times in a row (the max). A blocking flock taken in a "
               "helper thread would queue waiters instead.")


def _worker(root: str, worker: int, n: int, barrier: Any, queue: Any) -> None:
    from cas_repo import ModelStore

    from . import models

    with ModelStore(root) as store:
        batch = [models.small_model(worker, i) for i in range(n)]
        barrier.wait()
        start = time.monotonic()
        latencies, versions = [], []
        for i, m in enumerate(batch):
            md = models.metadata(f"worker{worker}", model_type="MLP")
            t = time.monotonic()
            store.save_model(m, md)
            latencies.append(time.monotonic() - t)
            versions.append(md.version)
        queue.put((worker, start, time.monotonic(), latencies, versions))


def _round(root: str, workers: int, n: int) -> tuple[float, Timing, dict[int, list[int]]]:
    """(saves per second, per-save latency, versions acknowledged per worker)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(root, w, n, barrier, queue)) for w in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"a saving process exited with {p.exitcode}")
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    latencies = Timing(tuple(x for r in results for x in r[3]))
    return workers * n / wall, latencies, {r[0]: r[4] for r in results}


def run(quick: bool) -> list[Result]:
    from cas_repo import ModelStore

    n = 5 if quick else 40
    rows = []
    with scratch("concurrency") as base:
        single, single_lat, _ = _round(str(base / "one"), 1, n)
        root = str(base / "four")
        multi, multi_lat, versions = _round(root, WORKERS, n)
        with ModelStore(root) as store:
            for w, vs in versions.items():
                stored = [md.version for md in store.history(f"worker{w}")]
                if sorted(vs) != list(range(1, n + 1)) or stored != list(range(1, n + 1)):
                    raise AssertionError(f"worker {w}: acknowledged {vs}, stored {stored}")
    one = Result("concurrency", f"1 process, {n} saves: saves/s", single, "saves/s")
    rows += [one,
             single_lat.result("concurrency", "1 process: latency of a save"),
             relative_to(Result("concurrency", f"{WORKERS} processes × {n} saves: total saves/s", multi, "saves/s",
                                note="every acknowledged version was found in each model's history"),
                         "1 process", single),
             multi_lat.result("concurrency", f"{WORKERS} processes: latency of a save (lock wait included)",
                              note=WHY_LATENCY)]
    return rows
