"""Run a function in several spawned processes that start together and report through a queue.

Spawned, not forked: obstore hangs in a child forked after the parent used it, and a
spawned child imports cas-repo afresh, as another machine would.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Sequence
from typing import Any

import pytest


def run_together(target: Callable[..., None], arg_lists: Sequence[tuple], *, timeout: float,
                 what: str = "a process") -> list[Any]:
    """Start ``target(*args, start, results)`` for each ``args``; return what each put on ``results``.

    ``start`` is a barrier all of them wait on, so their work overlaps; a process that
    does not report within ``timeout`` seconds, or exits with a failure, fails the test;
    every process is reaped (killed if it is still alive) whatever happens.
    """
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(len(arg_lists)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, results)) for args in arg_lists]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=timeout) for _ in procs]
    except queue.Empty:
        pytest.fail(f"{what} did not finish within {timeout:.0f} s")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    codes = [p.exitcode for p in procs]
    if any(codes):
        pytest.fail(f"{what} exited with a failure after reporting (exit codes {codes})")
    return out
