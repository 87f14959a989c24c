"""Import of Qlib Recorder runs: bytes in mlruns vs bytes in cas-repo, and import throughput.

    python tools/bench/import_mlruns.py [--runs 50] [--rounds 100] [--extra 10] [--dir D]

Trains one LightGBM ``LGBModel`` (``--rounds`` trees) on the synthetic Qlib dataset and
continues training it ``--runs - 1`` times (``--extra`` trees each), as a daily
fine-tune would. Each model is saved by Qlib's real Recorder in its own run
(``R.start`` + ``R.save_objects``; the fits run outside the Recorder, whose per-round
metric logging would dominate). Then ``import_mlruns`` copies every run into a fresh
store (shared catalog mode, as the CLI), again to show that a re-import adds nothing,
and once more into a store opened ``exclusive``. Prints a JSON report last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from cas_repo import ModelStore
from cas_repo.qlib_support import synthetic as syn
from cas_repo.qlib_support.mlruns_import import import_mlruns
from cas_repo.qlib_support.recorder import wait_for_logging


def tree_bytes(root: Path, pattern: str = "*") -> int:
    """Apparent size of the files under ``root`` matching ``pattern``."""
    return sum(p.stat().st_size for p in root.rglob(pattern) if p.is_file())


def make_runs(work: Path, runs: int, rounds: int, extra: int) -> tuple[Path, list, object, float]:
    dataset = syn.make_dataset()
    t0 = time.perf_counter()
    models = [syn.train_lgbm(dataset, num_boost_round=rounds)]
    for _ in range(runs - 1):
        models.append(syn.continue_training(models[-1], dataset, extra))
    train_s = time.perf_counter() - t0
    with syn.offline_qlib(work / "qlib") as R:
        for i, model in enumerate(models):
            with R.start(experiment_name="continued_lgbm", recorder_name=f"day{i:03d}"):
                R.log_params(trees=model.model.num_trees(), parent=f"day{i - 1:03d}" if i else "")
                wait_for_logging(R.get_recorder())  # qlib logs from a thread; save_objects reads the run
                R.save_objects(trained_model=model)
    return work / "qlib" / "mlruns", models, dataset, train_s


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--extra", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_import_")).absolute()
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    mlruns, models, dataset, train_s = make_runs(work, args.runs, args.rounds, args.extra)
    recorder_s = time.perf_counter() - t0 - train_s
    mlruns_total = tree_bytes(mlruns)
    artifacts = tree_bytes(mlruns, "trained_model")

    with ModelStore(work / "cas") as store:  # shared mode, as `cas-repo import-mlruns`
        first = import_mlruns(store, mlruns)
        again = import_mlruns(store, mlruns)
        last, _ = store.load_model("continued_lgbm.trained_model")
        same = np.array_equal(syn.predict(last, dataset), syn.predict(models[-1], dataset))
        stats = store.stats()
    cas_total = tree_bytes(work / "cas")
    with ModelStore(work / "cas_exclusive", exclusive=True) as store:  # `--exclusive`
        exclusive = import_mlruns(store, mlruns)
    exclusive_total = tree_bytes(work / "cas_exclusive")

    report = {
        "bench": "import_mlruns", "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "runs": args.runs, "trees": [args.rounds, args.rounds + args.extra * (args.runs - 1)],
        "train_seconds": round(train_s, 2), "recorder_seconds": round(recorder_s, 2),
        "mlruns_bytes": mlruns_total, "mlruns_artifact_bytes": artifacts,
        "cas_pack_bytes": stats.physical_bytes, "cas_total_bytes": cas_total,
        "pack_ratio": round(stats.physical_bytes / artifacts, 4),
        "total_ratio": round(cas_total / mlruns_total, 4),
        "versions": first.versions_created, "refused": len(first.refused),
        "import_seconds": round(first.seconds, 2),
        "import_runs_per_s": round(args.runs / first.seconds, 1),
        "import_mb_per_s": round(artifacts / first.seconds / 1e6, 1),
        "exclusive_import_seconds": round(exclusive.seconds, 2),
        "exclusive_import_mb_per_s": round(artifacts / exclusive.seconds / 1e6, 1),
        "exclusive_cas_total_bytes": exclusive_total,
        "reimport_seconds": round(again.seconds, 3), "reimport_new_versions": again.versions_created,
        "reimport_new_bytes": again.new_physical_bytes, "last_version_predicts_identically": same,
        "work_dir": str(work),
    }
    print(f"{args.runs} Recorder runs of continued-training LGBModel "
          f"({report['trees'][0]}..{report['trees'][1]} trees), made in {recorder_s:.1f} s")
    print(f"mlruns:   {mlruns_total / 1e6:8.2f} MB ({artifacts / 1e6:.2f} MB of pickles)")
    print(f"cas-repo: {cas_total / 1e6:8.2f} MB ({stats.physical_bytes / 1e6:.2f} MB of packs, "
          "the rest is the DuckDB catalog)")
    print(f"ratio:    packs {report['pack_ratio']:.1%} of the pickles, "
          f"whole store {report['total_ratio']:.1%} of the whole mlruns tree")
    print(f"import:   {first.seconds:.2f} s = {report['import_runs_per_s']} runs/s, "
          f"{report['import_mb_per_s']} MB/s of pickles; re-import {again.seconds:.2f} s, "
          f"{again.versions_created} new versions")
    print(f"          --exclusive: {exclusive.seconds:.2f} s = {report['exclusive_import_mb_per_s']} MB/s; "
          f"store {exclusive_total / 1e6:.2f} MB")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
