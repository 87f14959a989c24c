"""``python -m tools.bench``: run the benchmark scenarios, print a table, write the report.

    python -m tools.bench                      # full sizes; writes docs/benchmarks.md
    python -m tools.bench --quick              # < 2 min; prints only
    python -m tools.bench --only lightgbm --json out.json
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from .framework import Result, machine_info
from .report import Run, Section, as_json, console, markdown

# The registry: one line per scenario module in tools/bench/ (see README.md for the
# interface). Order matters only for the report.
SCENARIOS = [
    "limits",
    "lightgbm",
    "rolling",
    "large_array",
    "concurrency",
]

DEFAULT_OUT = Path("docs/benchmarks.md")

# Scenarios measured elsewhere until their module is registered above.
# Benchmarks with their own command (not yet scenarios of this harness): where their
# latest figures are recorded.
OTHER_BENCHMARKS = """
## Benchmarks run by their own command

Their latest figures are recorded, with machine and date, in the page each one names.

| what | command | figures |
|---|---|---|
| catalog at scale: 1M versions of 100k models (head lookup, `list_models`, `history`, best-IC query) | `python tools/bench/catalog_scale.py` | `docs/sql.md`, "Scale" |
| import of 50 Recorder runs of continued-training LightGBM models | `python tools/bench/import_mlruns.py` | `docs/qlib.md` |
| objects on S3 (moto on loopback) beside the local backend | `python -m tools.bench.s3` | `docs/s3.md` |
| S3 primitives (create-only PUT, PUT, GET, LIST) on SeaweedFS and moto, loopback | `python -m tools.bench.s3_primitives` | `docs/s3.md` |
| audit, fsck, gc, retention and rebuild on 200 LightGBM / 2,000 synthetic versions | `python -m tools.maintenance_bench` | `docs/maintenance.md` |
"""


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__package__}.{name}")


def run_scenario(name: str, quick: bool, log) -> Section:
    module = load(name)
    title = getattr(module, "TITLE", name)
    about = getattr(module, "ABOUT", "")
    log(f"-- {title} …")
    t = time.perf_counter()
    try:
        results = tuple(module.run(quick))
        error = None
    except Exception as exc:  # one broken scenario must not lose the others' figures
        traceback.print_exc()
        results, error = (), f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t
    for r in results:
        if not isinstance(r, Result):
            raise TypeError(f"scenario {name} returned {type(r).__name__}, not Result")
    log(f"   done in {seconds:.0f} s")
    return Section(name, title, about, results, seconds, error)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, the whole run in under 2 minutes")
    p.add_argument("--only", action="append", metavar="NAME", choices=SCENARIOS,
                   help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}")
    p.add_argument("--out", type=Path, metavar="MD",
                   help=f"write the Markdown report here (default for a full run of every scenario: {DEFAULT_OUT})")
    p.add_argument("--json", type=Path, metavar="F", help="also write every result as JSON")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for name in SCENARIOS:
            sys.stdout.write(f"{name:<14} {getattr(load(name), 'TITLE', '')}\n")
        return 0
    names = args.only or SCENARIOS
    out = args.out
    if out is None and not args.quick and not args.only:
        out = DEFAULT_OUT

    def log(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    command = "python -m tools.bench" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    machine = machine_info()
    load_start = os.getloadavg()
    log(f"cas-repo benchmarks ({'quick' if args.quick else 'full'}): {', '.join(names)}; "
        f"load average {load_start[0]:.2f}")
    sections = tuple(run_scenario(n, args.quick, log) for n in names)
    run = Run(command, args.quick, machine, load_start, os.getloadavg(), sections)
    sys.stdout.write(console(run) + "\n")
    la = run.load_end
    sys.stdout.write(f"\nload average: start {load_start[0]:.2f}, end {la[0]:.2f}\n")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown(run, epilogue=OTHER_BENCHMARKS))
        log(f"wrote {out}")
    if args.json:
        args.json.write_text(as_json(run))
        log(f"wrote {args.json}")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
