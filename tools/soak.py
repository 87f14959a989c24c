"""Crash soak: kill -9 a saving process thousands of times and check nothing acknowledged is lost.

    python tools/soak.py --kills 2000            # or --minutes 30
    python tools/soak.py --minutes 10 --max-mb 200 --dir /mnt/other-disk/soak

The same loop the test suite runs 100 times (``tests/robustness/killloop.py``); exits 1
and lists the problems if any check failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.robustness.killloop import run_kill_loop  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--minutes", type=float, help="run for this long instead of a number of kills")
    ap.add_argument("--max-mb", type=float, default=50, help="largest payload (MiB)")
    ap.add_argument("--max-delay", type=float, default=0.6, help="longest time a saver runs (s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, help="where to put the store (default: a temp folder)")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="cas-soak-"))

    def progress(round_: int, acked: int, report) -> None:
        if round_ % 50 == 0:
            print(f"{round_} kills, {acked} acknowledged, {report.loads} loads checked, "
                  f"{len(report.problems)} problems", flush=True)

    report = run_kill_loop(base / "cas", kills=args.kills, seed=args.seed,
                           max_size=int(args.max_mb * (1 << 20)), max_delay=args.max_delay,
                           seconds=args.minutes * 60 if args.minutes else None, progress=progress)
    print(f"{report.kills} kills in {report.seconds:.0f}s: {report.acked} acknowledged saves "
          f"(largest {report.largest_acked / 1e6:.1f} MB), {report.committed_unacked} committed but "
          f"unacknowledged, {report.loads} byte-identical loads, {report.orphan_packs} orphan packs, "
          f"{report.temp_files} temp files left; store at {base}")
    for p in report.problems:
        print("PROBLEM:", p)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
