"""Crash soak: kill -9 savers and index readers thousands of times; check nothing acknowledged is lost.

    python tools/soak.py --kills 2000            # or --minutes 30
    python tools/soak.py --minutes 10 --max-mb 200 --dir /mnt/other-disk/soak

The same loop the test suite runs 30 times (``tests/robustness/killloop.py``): two savers
race for the log while an indexer runs history()/SQL sessions on the store's catalog
index, each killed at a random instant; the index is never rebuilt by hand. Exits 1 and
lists the problems if any check failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.robustness.killloop import run_kill_loop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--minutes", type=float, help="run for this long instead of a number of kills")
    ap.add_argument("--max-mb", type=float, default=50, help="largest payload (MiB)")
    ap.add_argument("--max-delay", type=float, default=0.6, help="longest time a child runs (s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, help="where to put the store (default: a temp folder)")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="cas-soak-"))
    # The store's catalog index beside it, not in the user's cache (the children inherit this).
    os.environ.setdefault("CAS_REPO_INDEX_DIR", str(base / "index"))

    def progress(round_: int, acked: int, report) -> None:
        if round_ % 50 == 0:
            print(f"{round_} kills, {acked} acknowledged, {report.loads} loads checked, "
                  f"{report.index_wals} index WALs left ({report.index_torn} torn), "
                  f"{report.index_rebuilt} index rebuilds, {len(report.problems)} problems", flush=True)

    report = run_kill_loop(base / "cas", kills=args.kills, seed=args.seed,
                           max_size=int(args.max_mb * (1 << 20)), max_delay=args.max_delay,
                           seconds=args.minutes * 60 if args.minutes else None, progress=progress)
    print(f"{report.kills} kill rounds in {report.seconds:.0f}s ({report.check_seconds:.0f}s checking): "
          f"{report.acked} acknowledged saves (largest {report.largest_acked / 1e6:.1f} MB), "
          f"{report.committed_unacked} committed but unacknowledged, {report.loads} byte-identical loads; "
          f"index: {report.index_wals} sessions killed with a WAL left, {report.index_torn} WALs torn, "
          f"{report.index_rebuilt} set aside and rebuilt automatically; {report.orphan_packs} orphan packs and "
          f"{report.temp_files} temp files left, {report.gc_deleted} removed by gc; store at {base}")
    for p in report.problems:
        print("PROBLEM:", p)
    print(f"{len(report.problems)} problems")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
