"""Scenario: what a new process pays before it does anything — ``import cas_repo`` and the CLI.

Each sample is the wall time of a fresh process (``subprocess.run``), so it includes the
interpreter's own start-up, measured alone in the same round-robin. ``cas-repo ls`` runs
on a small store like the demo's (six models, a few versions each), with its index
already built; it reads the log, not the index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cas_repo import ModelStore

from . import models
from .framework import Result, Timing, bounded, explain, measure_many, scratch

TITLE = "Start-up: import cas_repo and the CLI"
ABOUT = (
    "Wall time of fresh processes, round-robin: `python -c pass` (the interpreter alone), "
    "`python -c 'import cas_repo'`, `cas-repo --help`, and `cas-repo ls` on a store of six "
    "models with three versions each; and the import alone, timed inside a fresh process. Targets: "
    "the import ≤ 100 ms, `--help` and `ls` ≤ 300 ms each (wall). "
    "`python -X importtime -c 'import cas_repo'` shows where an import's time goes.")

IMPORT_MS = 100
CLI_MS = 300


_TIMED_IMPORT = "import time; t = time.perf_counter(); import cas_repo; print(time.perf_counter() - t)"


def _proc(*args: str, env: dict[str, str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)


def _import_seconds(env: dict[str, str]) -> float:
    """The import alone, timed inside a fresh process (interpreter start-up excluded)."""
    out = subprocess.run([sys.executable, "-c", _TIMED_IMPORT], check=True, capture_output=True, text=True, env=env)
    return float(out.stdout)


def run(quick: bool) -> list[Result]:
    repeats = 5 if quick else 30
    cli = str(Path(sys.executable).with_name("cas-repo"))
    with scratch("startup") as base:
        env = dict(os.environ, CAS_REPO_INDEX_DIR=str(base / "index"))
        root = str(base / "cas")
        with ModelStore(root) as store:
            for i in range(6):
                for v in range(3):
                    store.save_model(models.tiny_model(i, v), models.metadata(f"model-{i}"))
        _proc(cli, "--repo", root, "ls", env=env)  # the first call may upgrade nothing; warm the page cache
        t = measure_many({
            "python": lambda: _proc(sys.executable, "-c", "pass", env=env),
            "import": lambda: _proc(sys.executable, "-c", "import cas_repo", env=env),
            "help": lambda: _proc(cli, "--help", env=env),
            "ls": lambda: _proc(cli, "--repo", root, "ls", env=env),
        }, repeats, warmup=1)
        inside = Timing(tuple(_import_seconds(env) for _ in range(repeats)))
    interp = t["python"].median * 1e3
    note = f"the interpreter alone: {interp:.0f} ms"
    return [
        t["python"].result("startup", "python -c pass (the interpreter alone)", unit="ms"),
        t["import"].result("startup", "python -c 'import cas_repo' (process wall time)", unit="ms", note=note),
        explain(bounded(inside.result("startup", "import cas_repo (timed inside the process)", unit="ms"),
                        "<=", IMPORT_MS),
                "`python -X importtime -c 'import cas_repo'`: something heavy is imported at module level"),
        explain(bounded(t["help"].result("startup", "cas-repo --help", unit="ms", note=note), "<=", CLI_MS),
                "`python -X importtime -m cas_repo.cli --help`"),
        explain(bounded(t["ls"].result("startup", "cas-repo ls (6 models, 18 versions)", unit="ms", note=note),
                        "<=", CLI_MS),
                "`python -X importtime -m cas_repo.cli ls`: ls should import neither DuckDB nor Arrow"),
    ]
