"""kill -9 of savers and of an index reader at ≥30 random instants: nothing acknowledged is ever lost,
and the store — its catalog index included — opens every time with no manual step."""

from __future__ import annotations

import os

import pytest

from .killloop import run_kill_loop


@pytest.mark.slow
def test_kill_9_at_random_instants_never_loses_an_acknowledged_save(tmp_path):
    # Mechanisms: packs before the commit and create-only commits (a kill leaves at most
    # debris, never a half commit); the fold of the log on every read; the index set aside
    # and rebuilt by itself (Catalog._absorb_wal / _set_aside) when a kill or a tear
    # damaged it — without them a round's check fails or raises. Thirty rounds cover every
    # kind of round (forced WAL, torn WAL, huge save, checkpoint, start-up kill) at least
    # twice; `python tools/soak.py --kills 1000` is the long run.
    kills = int(os.environ.get("CAS_REPO_SOAK_KILLS", "30"))
    report = run_kill_loop(tmp_path / "cas", kills=kills, seed=int(os.environ.get("CAS_REPO_SOAK_SEED", "6")))
    print(report)
    assert report.problems == []
    assert report.kills >= kills
    # The loop must really have exercised saves, both finished and interrupted ones…
    assert report.acked >= kills // 10
    assert report.largest_attempted >= 20 << 20 and report.largest_acked >= 1 << 20
    assert report.temp_files + report.orphan_packs > 0
    # …and index sessions killed with a WAL left behind, torn ones among them, healed.
    assert report.index_wals >= kills // 10 and report.index_torn >= kills // 20
    assert report.index_rebuilt >= 1
