"""Processes saving into one store folder at once: throughput of 2 against 1, and the
latency tail of 8 saving one model."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

from . import models
from .framework import Result, Timing, bounded, explain, median_ci, percentile, relative_to, scratch
from .phases import PhaseClock

TITLE = "Concurrency: processes saving at once"
ABOUT = (
    "Each process opens its own `ModelStore` on one local folder (default mode, fsync on) "
    "and saves real 100-tree `LGBModel`s (~300 KB pickled; each save a different model, so "
    "every save writes a new pack). Every save takes the next log position with a create-only "
    "`link(2)`; a loser folds the winner's commit in and tries the next one. On a folder the "
    "processes of one machine first catch up, then take turns at the commit (an advisory "
    "`flock`, waited for at most 0.5 s: a hint that spares them fsynced attempts that lose, "
    "never what decides). Processes load their models and make one untimed save "
    "first, then start together at a barrier; every process records the latency of each of "
    "its saves. *Throughput*: all saves over the wall time from the barrier to the last "
    "save, 1 process against 2 saving different models, the two runs alternated "
    "3 times (once with `--quick`; medians). *8 processes* save versions of one model_id, the worst case "
    "for the race; *lost races* counts the commit attempts that found their position taken. "
    "Every store is given a few hundred earlier saves first (a store in use), and afterwards "
    "every acknowledged version is checked against the model's history in the catalog index. "
    "Workers run with OpenMP limited to one thread, as in the process that trained the models "
    "(LightGBM's `model_to_string`, run by pickling, is an OpenMP loop; in a process that only "
    "loaded a booster it uses every core, which made each pickle ~2.5× slower here). The "
    "per-phase rows come from phase timers installed in the timed saves (~1 µs a call, ~1 % of "
    "a save).")

PREFILL = 300
TAIL_FACTOR = 10.0
MAX_WAIT_S = 1.0


def _worker(root: str, worker: int, model_file: str, model_id: str, barrier: Any, queue: Any) -> None:
    """Pickle every model of ``model_file`` (no store: the CPU share of a save, to see what
    the machine gives a second process), then save each one; both passes start at a barrier."""
    from cas_repo import ModelStore

    with open(model_file, "rb") as f:
        batch = pickle.load(f)
    _one_openmp_thread()
    with ModelStore(root) as store:
        backend = store.objects.backend
        lost = [0]

        def counting_create(key: str, data: bytes) -> bool:
            # Looked up on the class at call time, so the phase timer's wrapper is reached.
            won = type(backend).create(backend, key, data)
            if not won and key.startswith("log/"):
                lost[0] += 1
            return won

        backend.create = counting_create  # the ledger's log calls the backend through this object
        store.save_model(models.tiny_model(worker, 0), models.metadata(f"warmup{worker}", model_type="MLP"))
        pickle.dumps(batch[0], protocol=5)
        barrier.wait()
        start, cpu = time.monotonic(), time.process_time()
        for m in batch:
            pickle.dumps(m, protocol=5)
        pickling = (start, time.monotonic(), (time.process_time() - cpu) / len(batch))
        clock = PhaseClock()
        barrier.wait()
        with clock.installed():
            start, cpu = time.monotonic(), time.process_time()
            latencies, versions, losses = [], [], []
            for m in batch:
                md = models.metadata(model_id)
                before = lost[0]
                t = time.monotonic()
                store.save_model(m, md)
                latencies.append(time.monotonic() - t)
                versions.append(md.version)
                losses.append(lost[0] - before)
            end = time.monotonic()
            cpu = (time.process_time() - cpu) / len(batch)
        phases = clock.take()
        phases["other"] = max(0.0, sum(latencies) - sum(phases.values()))
        queue.put((worker, start, end, latencies, versions, losses, cpu, pickling,
                   {k: v / len(batch) for k, v in phases.items()}))


def _one_openmp_thread() -> None:
    """Limit OpenMP to one thread, as in the process that trained the models (num_threads=1).

    LightGBM's ``model_to_string`` (what pickling an LGBModel runs) is an OpenMP loop; in a
    process that only loaded a booster, OpenMP uses every core, and on 2 shared cores that
    made each pickle ~2.5× slower in CPU and in wall time here.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn, which qlib pulls in, brings it
        return
    threadpool_limits(1)


def _collect(procs: list[Any], queue: Any) -> list[tuple]:
    """Every worker's result; raises as soon as a worker died without one."""
    import queue as queue_mod

    results: list[tuple] = []
    deadline = time.monotonic() + 900
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=1.0))
        except queue_mod.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"a saving process exited with {dead[0]}" if dead else "workers timed out") from None
    return results


def _round(root: Path, batches: list[list[Any]], model_ids: list[str], prefill: int) -> dict[str, Any]:
    """Processes saving ``batches[i]`` under ``model_ids[i]`` at once; checks every version."""
    from cas_repo import ModelStore

    models.fill_store(root, prefill)
    files = []
    for i, batch in enumerate(batches):
        f = root.parent / f"{root.name}-models{i}.pkl"
        f.write_bytes(pickle.dumps(batch, protocol=5))
        files.append(f)
    # Fresh processes forked from a server that imported qlib once: a spawned process
    # would pay the ~2 s import of qlib's model package to unpickle its models. pyarrow
    # (zstd) and pyfastcdc are what a first save imports (import cas_repo does not, ~0.2 s
    # per process): preloaded too, so the rates are of processes already saving.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["cas_repo", "pyarrow", "pyfastcdc", "tools.bench.models", "qlib.contrib.model.gbdt"])
    barrier, queue = ctx.Barrier(len(batches)), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(root), w, str(files[w]), model_ids[w], barrier, queue))
             for w in range(len(batches))]
    for p in procs:
        p.start()
    try:
        results = _collect(procs, queue)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    acknowledged: dict[str, list[int]] = {}
    for w, _s, _e, _lat, versions, *_ in results:
        acknowledged.setdefault(model_ids[w], []).extend(versions)
    with ModelStore(root) as store:
        for mid, versions in acknowledged.items():
            stored = [md.version for md in store.history(mid)]
            if sorted(versions) != list(range(1, len(versions) + 1)) or stored != sorted(versions):
                raise AssertionError(f"{mid}: acknowledged {sorted(versions)}, stored {stored}")
    saves = sum(len(b) for b in batches)
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    pickle_wall = max(r[7][1] for r in results) - min(r[7][0] for r in results)
    return {"rate": saves / wall, "latencies": [x for r in results for x in r[3]],
            "lost": [x for r in results for x in r[5]], "cpu": statistics.mean(r[6] for r in results),
            "pickle_rate": saves / pickle_wall, "pickle_cpu": statistics.mean(r[7][2] for r in results),
            "phases": [r[8] for r in results]}


_BIG_PHASES = ("pickling", "compress", "pack write + fsync", "log commit (write + fsync + link)")


def _phase_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per save of each phase: the median over every process of every round."""
    per = [p for r in runs for p in r["phases"]]
    names = dict.fromkeys(k for p in per for k in p)
    return {k: statistics.median(p.get(k, 0.0) for p in per) for k in names}


def run(quick: bool) -> list[Result]:
    n, rounds = (10, 1) if quick else (30, 3)
    n8 = 3 if quick else 15
    prefill = 50 if quick else PREFILL
    variants = list(models.lgbm_variants(max(2 * n, 8 * n8)))
    ones, twos = [], []
    with scratch("concurrency") as base:
        for r in range(rounds):
            ones.append(_round(base / f"one{r}", [variants[:n]], ["model0"], prefill))
            twos.append(_round(base / f"two{r}", [variants[:n], variants[n:2 * n]], ["model0", "model1"], prefill))
        eight = _round(base / "eight", [variants[w * n8:(w + 1) * n8] for w in range(8)], ["shared"] * 8, prefill)

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def rate(metric: str, runs: list[dict[str, Any]], key: str = "rate") -> Result:
        xs = [r[key] for r in runs]
        return Result("concurrency", metric, statistics.median(xs), "saves/s", low=min(xs), high=max(xs),
                      repeats=len(xs), ci=median_ci(xs))

    single = med(ones, "rate")
    machine = med(twos, "pickle_rate") / med(ones, "pickle_rate")
    ph1, ph2 = _phase_medians(ones), _phase_medians(twos)

    def grew(name: str) -> str:
        return f"{name} {ph1.get(name, 0) * 1e3:.1f} → {ph2.get(name, 0) * 1e3:.1f} ms"

    why_pair = (
        f"per save, from 1 process to 2 ({', '.join(grew(p) for p in _BIG_PHASES)}): the CPU-only phases slow "
        f"down as much as the I/O, and the same two processes pickling the same models with no store at all "
        f"got {machine:.2f}× one process's rate in this run — the 2 cores are shared with other work (see the "
        "load average at the top) and fsyncs of two processes queue on one disk. What the store adds for a "
        f"second process is small: log catch-up of the other's commits ({grew('log catch-up')}) and lost "
        "races (below), each a wasted temp file write + fsync.")
    rows = [
        rate(f"1 process, {n} saves: saves/s", ones),
        Timing(tuple(x for r in ones for x in r["latencies"])).result("concurrency", "1 process: latency of a save"),
        Result("concurrency", "1 process: CPU time per save", med(ones, "cpu") * 1e3, "ms"),
        explain(relative_to(rate(f"2 processes × {n} saves, different models: saves/s", twos), "1 process", single,
                            ">=", 1.6), why_pair),
        Timing(tuple(x for r in twos for x in r["latencies"])).result("concurrency", "2 processes: latency of a save"),
        Result("concurrency", "2 processes: CPU time per save", med(twos, "cpu") * 1e3, "ms"),
        Result("concurrency", "2 processes: lost races per save",
               statistics.mean(x for r in twos for x in r["lost"]), "races"),
        relative_to(rate("machine: 2 processes only pickling the same models (no store): models/s", twos,
                         "pickle_rate"), "1 process pickling", med(ones, "pickle_rate")),
    ]
    for label, ph in (("1 process", ph1), ("2 processes", ph2)):
        rows += [Result("concurrency", f"{label}: per save, phase: {name}", x * 1e3, "ms")
                 for name, x in ph.items() if x >= 1e-4]
    lat = eight["latencies"]
    median, p99, worst = statistics.median(lat), percentile(lat, 99), max(lat)
    rows += [
        Result("concurrency", f"8 processes × {n8} saves of one model: saves/s", eight["rate"], "saves/s",
               note="every acknowledged version was found in the model's history, numbered 1..n without a gap"),
        Timing(tuple(lat)).result("concurrency", "8 processes: latency of a save"),
        explain(relative_to(Result("concurrency", f"8 processes: p99 latency (n={len(lat)})", p99 * 1e3, "ms"),
                            "median", median * 1e3, "<=", TAIL_FACTOR),
                "with 8 processes on 2 cores a save waits for CPU (pickling, hashing) as much as for "
                "its turn at the log; see lost races (with turns, a race is lost only to a writer "
                "that did not wait for its turn)."),
        explain(bounded(Result("concurrency", "8 processes: longest save (wait included)", worst, "s"),
                        "<=", MAX_WAIT_S),
                "a save that waited for the CPU and for its turn; see lost races."),
        Result("concurrency", "8 processes: lost races per save", statistics.mean(eight["lost"]), "races",
               note=f"max {max(eight['lost'])} for one save"),
    ]
    return rows
