"""mirror across processes: killed with SIGKILL at random instants, run while the source saves and
runs gc, and run twice at once into one mirror. The mirror is an ordinary store at every instant,
and ends byte-identical to the source."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from cas_repo import ModelStore
from cas_repo.maintenance import run_gc
from cas_repo.maintenance.mirror import mirror, open_mirror

from ..spawned import run_together
from .mirroring import heads, md, model, opens_clean, store_contents

pytestmark = pytest.mark.xdist_group("mirror-processes")

_CHILD = ("import sys, cas_repo.cli as cli; print('ready', flush=True); "
          "sys.exit(cli.main(['mirror', sys.argv[1], sys.argv[2]]))")


def _source(root: Path, versions: int) -> None:
    with ModelStore(root, backend_options={"fsync": False}) as s:
        for i in range(versions):
            s.save_model(model(i), md(f"m{i % 5}"))
        s.checkpoint()


def test_a_mirror_killed_at_random_instants_is_consistent_at_each_and_resumes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _source(src, 120)
    rng = random.Random(11)
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(dst)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline() == "ready\n"
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.2))  # the kill lands wherever the run has got to
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stdout.close()
        if (dst / "objects" / "log").is_dir():
            with ModelStore(dst) as d:  # an ordinary store at the kill: every head loads
                heads(d)
    assert kills >= 2
    assert mirror(src, dst).end == 120
    assert store_contents(dst) == store_contents(src)
    # What the killed runs were writing when they died is gone too: the folders match file for file.
    assert sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    assert opens_clean(dst) == opens_clean(src, check=False)


def _save_and_collect(src: str, rounds: int, start, results) -> None:
    start.wait()
    with ModelStore(src, backend_options={"fsync": False}) as s:
        for r in range(rounds):
            for i in range(4):
                s.save_model(model(1000 * r + i), md(f"g{i}"))
            s.delete_model(f"g{r % 4}")
            run_gc(s, grace=timedelta(0), purge_older_than=timedelta(0), repack_below=0.9)
            s.undelete_model(f"g{r % 4}")
    results.put(rounds)


def test_a_mirror_run_while_the_source_saves_and_runs_gc_ends_identical(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _source(src, 10)
    done: list[list[int]] = []
    writer = threading.Thread(target=lambda: done.append(
        run_together(_save_and_collect, [(str(src), 4)], timeout=120, what="the writer")))
    writer.start()
    with open_mirror(src, dst) as m:
        runs = 0
        while writer.is_alive() or runs == 0:
            m.run()  # each run copies what the source has now, gc's forgets and moves included
            runs += 1
    writer.join()
    assert done == [[4]]
    mirror(src, dst, full=True)  # the quiet run: what gc deleted after a run saw its commit goes too
    assert store_contents(dst) == store_contents(src)
    assert opens_clean(dst) == opens_clean(src, check=False)


def _mirror_once(src: str, dst: str, start, results) -> None:
    start.wait()
    results.put(mirror(src, dst).commits)


def test_two_mirror_processes_at_once_fill_one_mirror(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _source(src, 40)
    made = run_together(_mirror_once, [(str(src), str(dst))] * 2, timeout=120, what="a mirror")
    assert sum(made) >= 40  # each created its share, or found the other's bytes at a position
    assert mirror(src, dst).copied == 0
    assert store_contents(dst) == store_contents(src)
    assert opens_clean(dst) == opens_clean(src, check=False)
