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
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from cas_repo.catalog.paths import INDEX_ENV

from .framework import Result, machine_info
from .notes import notes
from .report import Run, Section, as_json, console, from_json, markdown

# The registry: one line per scenario module in tools/bench/ (see README.md for the
# interface). Order matters only for the report.
SCENARIOS = [
    "limits",
    "lightgbm",
    "rolling",
    "large_array",
    "concurrency",
    "scale_store",
    "catalog_scale",
    "ui",
    "aliases",
    "startup",
    "watch",
    "mirror",
    "s3_scale",
]

DEFAULT_OUT = Path("docs/benchmarks.md")

# Benchmarks with their own command (not scenarios of this harness): where their latest
# figures are recorded.
OTHER_BENCHMARKS = """
## Benchmarks run by their own command

Their latest figures are recorded, with machine and date, in the page each one names.

| what | command | figures |
|---|---|---|
""" + "".join(f"| {what} | `{command}` | `{page}` |\n" for what, command, page in (
    ("import of 50 Recorder runs of continued-training LightGBM models", "python tools/bench/import_mlruns.py",
     "docs/qlib.md"),
    ("objects on S3 (moto on loopback) beside the local backend", "python -m tools.bench.s3", "docs/s3.md"),
    ("audit, fsck, gc, retention and rebuild on 200 LightGBM / 2,000 synthetic versions",
     "python -m tools.maintenance_bench", "docs/maintenance.md"),
))


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
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: write the Markdown report (--out, default docs/benchmarks.md) of the "
                        "run saved in this --json file, with this version's notes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for name in SCENARIOS:
            sys.stdout.write(f"{name:<14} {getattr(load(name), 'TITLE', '')}\n")
        return 0
    if args.render:
        run = from_json(args.render.read_text())
        # A JSON file from before sections kept their paragraph: take this version's.
        run = replace(run, sections=tuple(s if s.about or s.name not in SCENARIOS else
                                          replace(s, about=getattr(load(s.name), "ABOUT", ""))
                                          for s in run.sections))
        out = args.out or DEFAULT_OUT
        out.write_text(markdown(run, epilogue=OTHER_BENCHMARKS, notes=notes(run)))
        sys.stderr.write(f"wrote {out} from {args.render}\n")
        return 0
    names = args.only or SCENARIOS
    out = args.out
    if out is None and not args.quick and not args.only:
        out = DEFAULT_OUT

    def log(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    # Catalog indexes of the run's stores go to a scratch folder, not the user's cache.
    index_dir = None
    if not os.environ.get(INDEX_ENV):
        index_dir = tempfile.mkdtemp(prefix="cas-bench-index-", dir=os.environ.get("CAS_BENCH_TMP") or None)
        os.environ[INDEX_ENV] = index_dir
    try:
        return _run(args, names, out, log, argv)
    finally:
        if index_dir:
            os.environ.pop(INDEX_ENV, None)
            shutil.rmtree(index_dir, ignore_errors=True)


def _run(args: argparse.Namespace, names: list[str], out: Path | None, log, argv: list[str] | None) -> int:
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
        out.write_text(markdown(run, epilogue=OTHER_BENCHMARKS, notes=notes(run)))
        log(f"wrote {out}")
    if args.json:
        args.json.write_text(as_json(run))
        log(f"wrote {args.json}")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
