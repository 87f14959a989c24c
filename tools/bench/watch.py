"""Scenario: how soon a watcher hands a new commit to its handler, and what it costs while idle.

A writer (its own ``ModelStore``, so the watcher learns of each commit only from the store)
moves an alias at random moments; a watcher (``run_watch`` with a cursor file, polling every
0.5 s, as ``cas-repo watch`` runs by default) records when its handler is called. Latency is
from the start of the writer's commit call to the handler's call. Then, with no writer, the
watcher's backend requests are counted through a counting wrapper around its backend (the
bench's own; the store has no counters) for a while and given per minute.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cas_repo import ModelMetadata, ModelStore
from cas_repo.follow import Change
from cas_repo.watch import run_watch

from .framework import Result, Timing, bounded, explain, percentile, scratch

TITLE = "Watch: from a commit to its handler"
ABOUT = (
    "A writer moves an alias at random moments (0.1–0.6 s apart) through its own `ModelStore`; a watcher "
    "(`run_watch` with a cursor file, `poll` 0.5 s: the defaults of `cas-repo watch`) records when its handler "
    "is called. Latency runs from the start of the writer's commit call to the handler's call. Then the watcher "
    "runs with nothing to do while a counting wrapper around its backend counts the requests it makes, given "
    "per minute. On a local folder and on SeaweedFS (`weed mini` on loopback; skipped without the `weed` binary). "
    "Target: p99 latency ≤ 1 s.")

POLL = 0.5
TARGET_S = 1.0
REQUESTS = ("get", "list", "stat", "exists", "create", "put", "read_range", "read_ranges", "delete", "touch")


@contextmanager
def counted(backend: Any) -> Iterator[Counter[str]]:
    """Count calls of ``backend``'s request methods (wrapped on the instance; removed afterwards)."""
    counts: Counter[str] = Counter()

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return fn(*args, **kwargs)
        return call

    wrapped = [n for n in REQUESTS if hasattr(backend, n)]
    for n in wrapped:
        setattr(backend, n, wrap(n, getattr(backend, n)))
    try:
        yield counts
    finally:
        for n in wrapped:
            delattr(backend, n)


def _md() -> ModelMetadata:
    return ModelMetadata("watched", "bench", "LGBM", {}, {"IC": 0.01}, datetime(2026, 1, 1))


def measure(label: str, url: str, options: dict[str, Any] | None, base: Path, events: int,
            idle_seconds: float) -> list[Result]:
    catalog = base / f"{label}-index.duckdb"
    with ModelStore(url, catalog=catalog, backend_options=options) as writer, \
            ModelStore(url, catalog=catalog, backend_options=options) as watcher:
        for _ in range(2):
            writer.save_model({"w": 1}, _md())
        started: dict[int, float] = {}
        handled: dict[int, float] = {}
        stop = threading.Event()
        everyone_seen = threading.Event()

        def handler(change: Change) -> None:
            handled[change.position] = time.perf_counter()
            if len(handled) >= events:
                everyone_seen.set()

        cursor = base / f"{label}.cursor"
        thread = threading.Thread(target=run_watch, args=(watcher, handler),
                                  kwargs={"cursor": cursor, "kinds": ["alias"], "poll": POLL, "stop": stop})
        thread.start()
        deadline = time.monotonic() + 30
        while not cursor.exists() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # the cursor is written once the watcher has taken its start (the log's end)
        rng = random.Random(1)
        try:
            for i in range(events):
                time.sleep(rng.uniform(0.1, 0.6))  # moments unrelated to the watcher's polls
                t = time.perf_counter()
                writer.set_alias("watched", "prod", 1 + i % 2)
                started[writer.log_position()] = t  # the position of the move just committed
            everyone_seen.wait(30)
            with counted(watcher.objects.backend) as counts:
                time.sleep(idle_seconds)
            stop.set()
        finally:
            stop.set()
            thread.join(timeout=30)
    lat = [handled[p] - t for p, t in started.items() if p in handled]
    missing = len(started) - len(lat)
    rows: list[Result] = []
    timing = Timing(tuple(lat))
    r = timing.result("watch", f"{label}: commit to handler, median ({len(lat)} events)", unit="ms",
                      note=f"{missing} events not handled within 30 s" if missing else "")
    rows.append(r)
    p99 = Result("watch", f"{label}: commit to handler, p99", 1e3 * percentile(lat, 99), "ms", repeats=len(lat))
    rows.append(explain(bounded(p99, "<=", 1e3 * TARGET_S),
                        "the poll interval bounds it: lower --poll (each look is one request)"))
    per_minute = sum(counts.values()) * 60 / idle_seconds
    detail = ", ".join(f"{n}: {c * 60 / idle_seconds:.0f}" for n, c in sorted(counts.items())) or "none"
    rows.append(Result("watch", f"{label}: backend requests per minute while idle (poll {POLL} s)", per_minute,
                       "req/min", note=f"by method per minute: {detail}; counted over {idle_seconds:.0f} s"))
    return rows


def run(quick: bool) -> list[Result]:
    events, idle = (5, 1.0) if quick else (50, 30.0)
    rows: list[Result] = []
    with scratch("watch") as base:
        rows += measure("folder", str(base / "cas"), None, base, events, idle)
        if quick:
            return rows  # a SeaweedFS server takes longer to start than a smoke test should
        from tools.s3_servers import SeaweedServer, weed_binary

        if weed_binary() is None:
            return rows
        server = SeaweedServer(base / "seaweedfs", "bench")
        try:
            rows += measure("SeaweedFS", "s3://bench/watch", server.options(), base, events, idle)
        finally:
            server.stop()
    return rows
