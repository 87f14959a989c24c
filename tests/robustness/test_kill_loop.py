"""kill -9 of a saving subprocess at ≥100 random instants: no acknowledged save is ever lost."""

from __future__ import annotations

import os

import pytest

from .killloop import run_kill_loop


@pytest.mark.slow
def test_kill_9_at_random_instants_never_loses_an_acknowledged_save(tmp_path):
    kills = int(os.environ.get("CAS_REPO_SOAK_KILLS", "100"))
    report = run_kill_loop(tmp_path / "cas", kills=kills, seed=int(os.environ.get("CAS_REPO_SOAK_SEED", "6")))
    print(report)
    assert report.problems == []
    assert report.kills >= kills
    # The loop must really have exercised saves, both finished and interrupted ones.
    assert report.acked >= kills // 10
    assert report.largest_attempted >= 20 << 20 and report.largest_acked >= 1 << 20
    assert report.temp_files + report.orphan_packs > 0
