"""Catalog at scale: 1,000,000 versions of 100,000 models, made through the bulk path.

    python -m tools.bench --only catalog_scale          # as a scenario of the harness
    python tools/bench/catalog_scale.py [--models 100000] [--versions 1000000] [--dir D]

Generates realistic rows (metrics, hyperparameters, tags, parent and rollback edges,
tombstones) as Arrow tables and imports them with ``catalog.bulk.bulk_import`` straight
into a catalog file, with no store and no log behind it: the catalog is the store's
derived index, and these are its own operations. It is opened as a
:class:`~cas_repo.catalog.Catalog` without a feeder (a store's ``history()`` would first
fold the store's log into it). Then it times what users do: a head lookup, the
``history`` of a 1,000-version model, every head and the "best Rank IC per experiment"
query, with the versions table laid out as the catalog keeps it (see :func:`build_catalog`).
The scenario keeps the generated catalog under ``.bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cas_repo.catalog import Catalog, cluster
from cas_repo.catalog.bulk import bulk_import

METRICS = ("IC", "ICIR", "Rank IC", "Rank ICIR")
TYPES = ("LGBM", "XGBoost", "MLP", "LSTM", "GRU")
BEST_IC_SQL = """
SELECT experiment_name,
       arg_max(model_id || '@' || version, metrics['Rank IC']) AS best_version,
       max(metrics['Rank IC']) AS best_rank_ic,
       count(*) AS versions
FROM v_versions
GROUP BY experiment_name
ORDER BY best_rank_ic DESC
"""


def _hex(rng: np.random.Generator, n: int) -> pa.Array:
    raw = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    return pa.array([row.tobytes().hex() for row in raw], pa.string())


def generate(n_models: int = 100_000, n_versions: int = 1_000_000, big: int = 1_000,
             seed: int = 0, start: datetime = datetime(2025, 1, 1)) -> dict[str, pa.Table]:
    """Catalog rows for ``n_versions`` versions of ``n_models`` models (model 0 has ``big``)."""
    rng = np.random.default_rng(seed)
    rest = n_versions - big
    counts = np.full(n_models, rest // (n_models - 1), dtype=np.int64)
    counts[1: 1 + rest % (n_models - 1)] += 1
    counts[0] = big
    model = np.repeat(np.arange(n_models), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    version = (np.arange(n_versions) - first + 1).astype(np.int32)
    names = pa.array([f"m{i:06d}" for i in range(n_models)], pa.string())
    model_id = names.take(pa.array(model))
    n_exp = max(1, n_models // 500)
    experiment = pa.array([f"exp{i:03d}" for i in range(n_exp)]).take(pa.array(rng.integers(0, n_exp, n_models)[model]))
    mtype = pa.array(TYPES).take(pa.array(rng.integers(0, len(TYPES), n_models)[model]))

    # Save times: each model's versions in order, spread over one year.
    offsets = _sorted_within((rng.random(n_versions) * 365 * 86400).astype("int64"), model)
    saved = pa.array(np.datetime64(start, "us") + offsets.astype("timedelta64[s]"), pa.timestamp("us"))
    created = pa.array(np.datetime64(start, "us") + (offsets - 600).astype("timedelta64[s]"), pa.timestamp("us"))

    is_rollback = (version > 1) & (rng.random(n_versions) < 0.02)
    rollback_of = np.where(is_rollback, (rng.random(n_versions) * (version - 1)).astype(np.int32) + 1, 0)
    manifest = _hex(rng, n_versions).to_numpy(zero_copy_only=False)
    rb_rows = np.nonzero(is_rollback)[0]
    manifest[rb_rows] = manifest[first[rb_rows] + rollback_of[rb_rows] - 1]
    record = _hex(rng, n_versions)

    ic = rng.normal(0.04, 0.02, n_versions)
    metric_values = np.stack([ic, ic / 0.12, ic * 1.1, ic * 1.1 / 0.11], axis=1).round(5)
    metrics = pa.MapArray.from_arrays(
        pa.array(np.arange(0, 4 * n_versions + 1, 4, dtype=np.int32)),
        pa.array(METRICS).take(pa.array(np.tile(np.arange(len(METRICS)), n_versions))),
        pa.array(metric_values.reshape(-1)))
    leaves = rng.choice([15, 31, 63, 127, 255], n_versions)
    lr = rng.choice([0.01, 0.02, 0.05, 0.1], n_versions)
    hyper = [f'{{"learning_rate":{a},"num_leaves":{b},"num_boost_round":{c},"seed":{d}}}'
             for a, b, c, d in zip(lr.tolist(), leaves.tolist(), (100 + version % 50).tolist(),
                                   rng.integers(0, 100, n_versions).tolist())]
    tagged = rng.random(n_versions) < 0.1
    stage = np.where(rng.random(n_versions) < 0.3, "prod", "dev")
    has_parent = (version > 1) & ~is_rollback & (rng.random(n_versions) < 0.3)
    mids, exps, types = model_id.to_pylist(), experiment.to_pylist(), mtype.to_pylist()
    created_iso = [c.isoformat() for c in created.to_pylist()]
    metadata = [
        '{"created_at":"%s","experiment_name":"%s","hyperparameters":%s,"lineage":{},'  # noqa: UP031 - JSON braces stay single with %
        '"metrics":{"IC":%r,"ICIR":%r,"Rank IC":%r,"Rank ICIR":%r},"model_id":"%s","model_type":"%s",'
        '"parents":[%s],"qlib_recorder_id":null,"tags":{%s}}' % (
            created_iso[i], exps[i], hyper[i], *metric_values[i].tolist(), mids[i], types[i],
            f'"{mids[i]}@{version[i] - 1}"' if has_parent[i] else "",
            f'"stage":"{stage[i]}"' if tagged[i] else "")
        for i in range(n_versions)]
    logical = rng.integers(200_000, 400_000, n_versions)
    versions = pa.table({
        "model_id": model_id, "version": version, "manifest": pa.array(manifest, pa.string()),
        "record": record, "kind": pa.array(np.where(is_rollback, "rollback", "save")),
        "rollback_of": pa.array(rollback_of, mask=~is_rollback), "experiment_name": experiment,
        "model_type": mtype, "created_at": created, "saved_at": saved,
        "qlib_recorder_id": pa.nulls(n_versions, pa.string()), "logical_size": pa.array(logical),
        "new_bytes": pa.array(np.where(is_rollback, 0, (logical * rng.uniform(0.05, 1, n_versions)).astype(int))),
        "metrics": metrics, "hyperparameters": pa.array(hyper), "lineage": pa.array(["{}"] * n_versions),
        "metadata_json": pa.array(metadata),
    })
    p_rows = np.nonzero(has_parent)[0]
    r_rows = np.nonzero(is_rollback)[0]
    lineage = pa.table({
        "model_id": model_id.take(pa.array(np.concatenate([p_rows, r_rows]))),
        "version": pa.array(np.concatenate([version[p_rows], version[r_rows]])),
        "parent_model": model_id.take(pa.array(np.concatenate([p_rows, r_rows]))),
        "parent_version": pa.array(np.concatenate([version[p_rows] - 1, rollback_of[r_rows]]).astype(np.int32)),
        "relation": pa.array(["parent"] * len(p_rows) + ["rollback_of"] * len(r_rows)),
    })
    t_rows = np.nonzero(tagged)[0]
    tags = pa.table({"model_id": model_id.take(pa.array(t_rows)), "version": pa.array(version[t_rows]),
                     "key": pa.array(["stage"] * len(t_rows)), "value": pa.array(stage[t_rows])})
    event_tags = pa.table({"model_id": tags["model_id"], "seq": tags["version"], "version": tags["version"],
                           "key": tags["key"], "value": tags["value"]})
    # One model in a hundred ends with a tombstone, an hour after its last save.
    last = np.cumsum(counts) - 1
    dead = last[rng.random(n_models) < 0.01]
    events = pa.table({
        "model_id": pa.concat_arrays([model_id, model_id.take(pa.array(dead))]),
        "seq": pa.array(np.concatenate([version, version[dead] + 1]).astype(np.int32)),
        "kind": pa.array(np.concatenate([np.where(is_rollback, "rollback", "save"), np.full(len(dead), "delete")])),
        "version": pa.array(np.concatenate([version, version[dead]])),
        "event_at": pa.concat_arrays([saved, pa.array(
            saved.to_numpy(zero_copy_only=False)[dead] + np.timedelta64(3600, "s"), pa.timestamp("us"))]),
        "record": pa.concat_arrays([record, _hex(rng, len(dead))]),
        "log_position": pa.nulls(len(model_id) + len(dead), pa.int64()),
    })
    # Rows in time order, as a catalog that grew save by save holds them: each model's
    # versions are spread over the whole table, so nothing benefits from model-sorted rows.
    versions = versions.take(pa.compute.sort_indices(versions, [("saved_at", "ascending")]))
    events = events.take(pa.compute.sort_indices(events, [("event_at", "ascending")]))
    return {"versions": versions, "lineage": lineage, "tags": tags, "events": events, "event_tags": event_tags}


def _sorted_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``values`` sorted ascending within each run of equal (sorted) ``groups``."""
    order = np.lexsort((values, groups))
    return values[order]


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in samples)
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(ms[max(0, int(len(ms) * 0.99) - 1)], 3),
            "n": len(ms)}


def _time(fn, repeat: int, cpu: list[float] | None = None) -> list[float]:
    """Wall times of ``repeat`` calls; CPU times (all threads) go to ``cpu`` if given."""
    out = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return out


def build_catalog(path: Path, n_models: int, n_versions: int, big: int = 1_000, tail: int = 0) -> dict[str, Any]:
    """A catalog file of generated rows (no store behind it); timings and row counts.

    With ``tail``, the newest ``tail`` versions are imported after the others were put in
    model order (``cluster_versions``, what a catch-up does once its unordered tail reaches
    ``CLUSTER_TAIL`` rows): the layout an index grown save by save has just before its next
    rewrite, its slowest for a model's history.
    """
    from cas_repo.catalog.cluster import cluster_versions

    t0 = time.perf_counter()
    tables = generate(n_models, n_versions, big=big)
    gen_s = time.perf_counter() - t0
    catalog = Catalog(path)
    versions = tables["versions"]
    head = dict(tables, versions=versions.slice(0, versions.num_rows - tail))
    t0 = time.perf_counter()
    with catalog.session() as s:
        s.con.execute("SET enable_progress_bar = false")
        counts = bulk_import(s, head)
    import_s = time.perf_counter() - t0
    with catalog.session() as s:
        t0 = time.perf_counter()
        cluster_versions(s)
        cluster_s = time.perf_counter() - t0
        if tail:
            t0 = time.perf_counter()
            counts["versions"] += bulk_import(s, {"versions": versions.slice(versions.num_rows - tail)})["versions"]
            import_s += time.perf_counter() - t0
        s.con.execute("CHECKPOINT")
    catalog.close()
    return {"generate_s": gen_s, "import_s": import_s, "rows": counts, "cluster_s": cluster_s, "tail": tail,
            "import_rows_per_s": sum(counts.values()) / import_s}


def measure(catalog: Catalog, lookups: int = 2000, big_model: str = "m000000") -> dict[str, Any]:
    """Time the catalog's operations; raw samples (seconds) per operation."""
    rnd = random.Random(1)
    with catalog.session() as s:
        live = [r[0] for r in s.rows("SELECT model_id FROM models WHERE NOT deleted ORDER BY model_id")]
        ids = [rnd.choice(live) for _ in range(lookups)]
        for mid in ids[:100]:  # warm the indexes and caches
            s.version_row(mid, None)
        it = iter(ids)
        head_cpu: list[float] = []
        head = _time(lambda: s.version_row(next(it), None), lookups, head_cpu)
        n_versions = len(s.history(big_model))
        if [v.version for v in s.history(big_model)] != list(range(1, n_versions + 1)):
            raise AssertionError("history() lost or reordered versions")
        hist_cpu: list[float] = []
        hist = _time(lambda: s.history(big_model), 30, hist_cpu)
        small = rnd.choice([m for m in live if m != big_model])
        small_hist = _time(lambda: s.history(small), 30)
        s_small = s.history(small)
        tail = cluster.unclustered_rows(s)
    with catalog.reader() as con:
        con.sql(BEST_IC_SQL).fetchall()
        query = _time(lambda: con.sql(BEST_IC_SQL).fetchall(), 5)
    return {"head": head, "head_cpu": head_cpu, "history": hist, "history_cpu": hist_cpu,
            "history_versions": n_versions, "small_history": small_hist, "small_versions": len(s_small),
            "best_ic": query, "tail": tail}


TITLE = "SQL at 1M versions"
ABOUT = (
    "A catalog index of 1,000,000 versions of 100,000 models (one of them with 1,000 versions; "
    "metrics, hyperparameters, tags, parent and rollback edges, 1 % tombstoned), generated as "
    "Arrow tables with rows in time order, as an index grown save by save holds them, and "
    "imported with `catalog.bulk.bulk_import`: all but the newest 32,767 versions, then the table "
    "put in (model_id, version) order as the index's catch-up does once 32,768 versions are out of "
    "order (`catalog/cluster.py`), then the newest 32,767 in time order: the layout just before the "
    "next rewrite, the slowest for a model's history (built once, kept under `.bench/`; `--quick`: "
    "20,000 versions of 2,000 models with a 2,000-version tail, built in a temp folder). It is opened "
    "as a `Catalog` without a feeder — no store and no log behind it — and timed on one session: the "
    "head lookup `Session.version_row(id, None)` over 2,000 random live models, `Session.history` of "
    "the 1,000-version model and of a 10-version one, and the best Rank IC per experiment over "
    "`v_versions`.")

CACHE_FORMAT = 2
HEAD_P50_MS = 1.0
HISTORY_MS = 20.0


def _tail(quick: bool) -> int:
    from cas_repo.catalog.cluster import CLUSTER_TAIL

    return 2_000 if quick else CLUSTER_TAIL - 1


def _cached_catalog(n_models: int, n_versions: int) -> tuple[Path, dict[str, Any] | None]:
    """The cached catalog of that size (built now if missing or from other migrations)."""
    from cas_repo.catalog.migrations import available

    from .framework import cache_dir

    folder = cache_dir() / f"catalog-{n_models}x{n_versions}-v{CACHE_FORMAT}"
    path, marker = folder / "catalog.duckdb", folder / "built.json"
    want = {"models": n_models, "versions": n_versions, "migrations": [m.checksum for m in available()],
            "tail": _tail(False)}
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == want:
                return path, None
        except ValueError:
            pass
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sys.stderr.write(f"   building a catalog of {n_versions:,} versions under {folder} (once; kept for later runs)\n")
    built = build_catalog(path, n_models, n_versions, tail=_tail(False))
    marker.write_text(json.dumps(want))
    return path, built


def run(quick: bool) -> list:
    """The harness scenario (see ABOUT)."""
    from .framework import Result, Timing, bounded, explain, percentile, scratch

    n_models, n_versions = (2_000, 20_000) if quick else (100_000, 1_000_000)
    with scratch("catalog") as tmp:
        if quick:
            path = tmp / "catalog.duckdb"
            built: dict[str, Any] | None = build_catalog(path, n_models, n_versions, tail=_tail(True))
        else:
            path, built = _cached_catalog(n_models, n_versions)
        catalog = Catalog(path)
        try:
            m = measure(catalog, lookups=500 if quick else 2000)
        finally:
            catalog.close()
        size = path.stat().st_size
    label = f"{n_versions:,} versions"
    rows = []
    if built is not None:
        rows += [Result("catalog_scale", "setup: generate the rows", built["generate_s"], "s"),
                 Result("catalog_scale", "setup: bulk_import", built["import_s"], "s",
                        note=f"{built['import_rows_per_s']:,.0f} rows/s"),
                 Result("catalog_scale", "setup: put versions in model order (cluster_versions)",
                        built["cluster_s"], "s", note="what a catch-up does when 32,768 versions are out of order")]
    p50 = Timing(tuple(m["head"])).result("catalog_scale", f"head lookup p50 ({label}, {len(m['head'])} "
                                                           "random models)")
    rows += [bounded(p50, "<=", HEAD_P50_MS),
             Result("catalog_scale", "head lookup p99", percentile(m["head"], 99) * 1e3, "ms"),
             Result("catalog_scale", "head lookup p50, CPU time", statistics.median(m["head_cpu"]) * 1e3, "ms")]
    hist = Timing(tuple(m["history"])).result(
        "catalog_scale", f"history() of a {m['history_versions']:,}-version model",
        note=f"rows in model order but for the newest {m['tail']:,} versions (in log order)")
    rows += [explain(bounded(hist, "<=", HISTORY_MS),
                     "DuckDB reads the row group whose min/max admit the model and every row appended since "
                     "the last rewrite in model order (the tail); see the notes in docs/benchmarks.md"),
             Result("catalog_scale", "history(), CPU time", statistics.median(m["history_cpu"]) * 1e3, "ms"),
             Timing(tuple(m["small_history"])).result(
                 "catalog_scale", f"history() of a {m['small_versions']}-version model (model_id index)"),
             Timing(tuple(m["best_ic"])).result("catalog_scale", "best Rank IC per experiment (SQL over v_versions)"),
             Result("catalog_scale", "catalog file", size / 2**20, "MiB")]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=1_000_000)
    ap.add_argument("--tail", type=int, default=_tail(False), help="versions imported after the rewrite")
    ap.add_argument("--dir", help="work folder (default: a temp dir, removed after)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "catalog.duckdb"
        built = build_catalog(path, args.models, args.versions, tail=args.tail)
        catalog = Catalog(path)
        m = measure(catalog)
        report = {
            "models": args.models, "versions": args.versions, "tail": args.tail,
            "generate_s": round(built["generate_s"], 1), "import_s": round(built["import_s"], 1),
            "cluster_s": round(built["cluster_s"], 1),
            "import_rows_per_s": int(built["import_rows_per_s"]), "rows": built["rows"],
            "head_lookup": _percentiles(m["head"]), "head_lookup_cpu": _percentiles(m["head_cpu"]),
            "history_1000_versions_ms": round(min(m["history"]) * 1000, 2),
            "history_1000_versions_p50_ms": round(statistics.median(m["history"]) * 1000, 2),
            "history_1000_versions_cpu_ms": round(min(m["history_cpu"]) * 1000, 2),
            "best_rank_ic_per_experiment_ms": round(min(m["best_ic"]) * 1000, 1),
            "catalog_mib": round(path.stat().st_size / 2**20, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
            "load_average_1m": round(os.getloadavg()[0], 1),
            "date": datetime.now().strftime("%Y-%m-%d"),
        }
        catalog.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
