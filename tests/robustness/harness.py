"""Running worker subprocesses from the repository root, with or without a crash point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def worker_env(crash_at: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_REPO_") or k == "CAS_REPO_INDEX_DIR"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if crash_at:
        env["CAS_REPO_CRASH_AT"] = crash_at
    env.update(extra)
    return env


def run_worker(*args: object, crash_at: str | None = None, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m tests.robustness.workers ARGS`` to completion (or to its crash)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.robustness.workers", *map(str, args)],
        cwd=REPO_ROOT, env=env or worker_env(crash_at), capture_output=True, text=True, timeout=timeout,
        check=False)  # a worker told to crash exits non-zero on purpose: callers read the code


def start_worker(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a worker with pipes for its stdin (commands, for ``serve``), stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.robustness.workers", *map(str, args)],
        cwd=REPO_ROOT, env=env or worker_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def acks(stdout: str) -> list[list[str]]:
    """The complete ``ack`` lines a worker printed (a torn last line is not an ack)."""
    lines = stdout.split("\n")[:-1]  # whatever follows the last newline was never finished
    return [l.split()[1:] for l in lines if l.startswith("ack ")]
