"""Time the maintenance tools on a store of real LightGBM models (or of synthetic arrays).

    python -m tools.maintenance_bench                 # 20 LightGBM models x 10 continued-training versions
    python -m tools.maintenance_bench --synthetic 2000 # 2000 versions of growing float arrays

Builds the store in a temp folder, then times audit, fsck (quick and full), a retention
run, gc (dry run and real, purging: one log commit, then the files) and rebuild-catalog
(a fold of the whole log into a new index), and prints one line per step.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timedelta

import numpy as np

from cas_repo import ModelMetadata, ModelStore
from cas_repo.maintenance import RetentionPolicy, apply_retention, audit, fsck, rebuild_catalog, render_html, run_gc


def _md(model_id: str, i: int, ic: float) -> ModelMetadata:
    return ModelMetadata(model_id, f"exp{i % 3}", "LGBM", {"round": i}, {"IC": ic}, datetime(2026, 1, 1))


def build_lgbm(store: ModelStore, models: int, versions: int) -> None:
    from cas_repo.qlib_support.synthetic import continue_training, make_dataset, make_frame, train_lgbm

    dataset = make_dataset(make_frame(n_instruments=50, n_days=300, n_features=20))
    for m in range(models):
        model = train_lgbm(dataset, num_boost_round=100, seed=m)
        for v in range(versions):
            store.save_model(model, _md(f"lgbm_{m:02d}", v, 0.01 * v))
            model = continue_training(model, dataset, extra_rounds=10)


def build_synthetic(store: ModelStore, versions: int) -> None:
    rng = np.random.default_rng(0)
    bases = [rng.standard_normal(40_000) for _ in range(max(versions // 50, 1))]
    for i in range(versions):
        m = i % len(bases)
        bases[m] = np.concatenate([bases[m], rng.standard_normal(500)])
        store.save_model({"w": bases[m], "i": i}, _md(f"syn_{m:03d}", i, 0.001 * (i % 40)))


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<28} {time.perf_counter() - t0:8.2f} s")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--versions", type=int, default=10)
    p.add_argument("--synthetic", type=int, metavar="N", help="N versions of synthetic arrays instead of LightGBM")
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="cas-maint-bench-")
    print(f"{platform.node()} {platform.processor() or platform.machine()} python {platform.python_version()} "
          f"{datetime.now():%Y-%m-%d}  store: {root}")
    with ModelStore(root, backend_options={"fsync": False}) as store:
        if args.synthetic:
            timed(f"build {args.synthetic} versions", lambda: build_synthetic(store, args.synthetic))
        else:
            timed(f"build {args.models}x{args.versions} LGBM", lambda: build_lgbm(store, args.models, args.versions))
        ids = sorted({m.model_id for m in store.list_models()})
        for mid in ids[: max(len(ids) // 4, 1)]:
            store.delete_model(mid)
        report = timed("audit (with walk)", lambda: audit(store))
        t = report.totals
        print(f"  {t.versions} versions, {t.objects} objects, {t.packs} packs; "
              f"logical {t.logical_bytes / 2**20:.1f} MiB, physical {t.physical_bytes / 2**20:.1f} MiB, "
              f"dedup {t.dedup_ratio:.1f}x, walk agrees {report.walk.agrees}")
        timed("render HTML", lambda: render_html(report))
        timed("fsck quick", lambda: fsck(store))
        timed("fsck full", lambda: fsck(store, full=True))
        timed("retain keep-last 3", lambda: apply_retention(store, RetentionPolicy(keep_last=3)))
        plan = timed("gc dry run (purge)", lambda: run_gc(store, dry_run=True, grace=timedelta(0),
                                                          purge_older_than=timedelta(0))).plan
        print(f"  plan at log position {plan.position}: purge {len(plan.purge)} versions, delete "
              f"{len(plan.delete)} packs, repack {len(plan.repack)}")
        gc = timed("gc (purge, repack, delete)", lambda: run_gc(store, grace=timedelta(0),
                                                               purge_older_than=timedelta(0)))
        print(f"  one commit ({gc.position}): purged {len(gc.purged)}, deleted {len(gc.deleted)} packs, repacked "
              f"{len(gc.repacked)} into {len(gc.new_packs)}, kept {len(gc.skipped)}")
        gc2 = timed("gc again (nothing to do)", lambda: run_gc(store, grace=timedelta(0)))
        after = audit(store).totals
        print(f"  freed {(gc.freed_bytes + gc2.freed_bytes) / 2**20:.1f} MiB; physical now "
              f"{after.physical_bytes / 2**20:.1f} MiB for {after.versions} stored versions")
        timed("fsck quick after gc", lambda: fsck(store))
    rebuilt = timed("rebuild-catalog", lambda: rebuild_catalog(root))
    print(f"  {rebuilt.events} events from {rebuilt.position} log commits, problems {len(rebuilt.problems)}")


if __name__ == "__main__":
    main()
