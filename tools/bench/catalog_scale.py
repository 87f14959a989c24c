"""Catalog at scale: 1,000,000 versions of 100,000 models, made through the bulk path.

    python tools/bench/catalog_scale.py [--models 100000] [--versions 1000000] [--dir D]

Generates realistic rows (metrics, hyperparameters, tags, parent and rollback edges,
tombstones) as Arrow tables, imports them with ``catalog.bulk.bulk_import`` into a fresh
store, then times what users do: a head lookup, ``list_models()`` of every model, the
``history`` of a 1,000-version model and the "best Rank IC per experiment" query.
``--drop-indexes`` removes the model_id indexes of migration 0002 first, to show what
they buy. Prints a JSON report on the last line.
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

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cas_repo import ModelStore  # noqa: E402
from cas_repo.catalog.bulk import bulk_import  # noqa: E402

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
        '{"created_at":"%s","experiment_name":"%s","hyperparameters":%s,"lineage":{},'
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
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 3),
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


def measure(store: ModelStore, n_models: int, lookups: int = 2000) -> dict[str, object]:
    """Time the four target operations on an exclusive-mode store (connection kept)."""
    rnd = random.Random(1)
    live = store.sql("SELECT model_id FROM v_models WHERE NOT deleted ORDER BY model_id").column(0).to_pylist()
    ids = [rnd.choice(live) for _ in range(lookups)]
    with store.catalog.session() as s:
        for mid in ids[:100]:  # warm the indexes and caches
            s.version_row(mid, None)
        it = iter(ids)
        head_catalog_cpu: list[float] = []
        head_catalog = _time(lambda: s.version_row(next(it), None), lookups, head_catalog_cpu)
    it = iter(ids)
    head_store_cpu: list[float] = []
    head_store = _time(lambda: store.get_model_metadata(next(it)), lookups, head_store_cpu)
    listed: list[int] = []
    list_cpu: list[float] = []
    list_times = _time(lambda: listed.append(len(store.list_models(include_deleted=True))), 5, list_cpu)
    hist_cpu: list[float] = []
    hist_times = _time(lambda: store.history("m000000"), 30, hist_cpu)
    query_cpu: list[float] = []
    with store.catalog.reader() as con:
        con.sql(BEST_IC_SQL).fetchall()
        query_times = _time(lambda: con.sql(BEST_IC_SQL).fetchall(), 10, query_cpu)
    sql_times = _time(lambda: store.sql(BEST_IC_SQL), 3)
    return {
        "head_lookup_catalog": _percentiles(head_catalog),
        "head_lookup_catalog_cpu": _percentiles(head_catalog_cpu),
        "head_lookup_get_model_metadata": _percentiles(head_store),
        "head_lookup_get_model_metadata_cpu": _percentiles(head_store_cpu),
        "list_models_all_s": round(min(list_times), 3), "list_models_cpu_s": round(min(list_cpu), 3),
        "list_models_rows": listed[0],
        "history_1000_versions_ms": round(min(hist_times) * 1000, 2),
        "history_1000_versions_cpu_ms": round(min(hist_cpu) * 1000, 2),
        "best_rank_ic_per_experiment_ms": round(min(query_times) * 1000, 1),
        "best_rank_ic_per_experiment_cpu_ms": round(min(query_cpu) * 1000, 1),
        "best_rank_ic_via_store_sql_ms": round(min(sql_times) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=1_000_000)
    ap.add_argument("--dir", help="store folder (default: a temp dir, removed after)")
    ap.add_argument("--drop-indexes", action="store_true", help="measure without 0002's model_id indexes")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t0 = time.perf_counter()
        tables = generate(args.models, args.versions)
        gen_s = time.perf_counter() - t0
        with ModelStore(Path(tmp) / "cas", exclusive=True) as store:
            t0 = time.perf_counter()
            with store.catalog.session() as s:
                counts = bulk_import(s, tables)
            import_s = time.perf_counter() - t0
            del tables
            if args.drop_indexes:
                with store.catalog.session() as s:
                    for ix in ("versions_model_id", "events_model_id"):
                        s.con.execute(f"DROP INDEX {ix}")
            report = {
                "models": args.models, "versions": args.versions, "indexes": not args.drop_indexes,
                "generate_s": round(gen_s, 1), "import_s": round(import_s, 1),
                "import_rows_per_s": int(sum(counts.values()) / import_s), "rows": counts,
                **measure(store, args.models),
                "catalog_mib": round((Path(tmp) / "cas" / "catalog.duckdb").stat().st_size / 2**20, 1),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
                "load_average_1m": round(os.getloadavg()[0], 1),
                "date": datetime.now().strftime("%Y-%m-%d"),
            }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
