"""The benchmark harness runs end to end at quick size and yields sane numbers (not timings)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cas_repo import ModelStore
from tools.bench import phases
from tools.bench.framework import Result, Timing, bounded, explain, faster_than, relative_to
from tools.bench.report import Run, Section, close_call, markdown, status
from tools.bench.seed_baseline import SeedRepository

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.xdist_group("processes")


@pytest.mark.slow
def test_quick_harness_runs_every_scenario_and_reports_sane_numbers(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    env = dict(os.environ, CAS_BENCH_TMP=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "--json", str(out_json),
                           "--out", str(out_md)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    report = json.loads(out_json.read_text()) if out_json.exists() else {"sections": []}
    errors = {s["name"]: s["error"] for s in report["sections"] if s["error"]}
    assert proc.returncode == 0 and not errors, (errors, proc.stderr[-6000:])
    from tools.bench.__main__ import SCENARIOS

    assert [s["name"] for s in report["sections"]] == SCENARIOS
    for section in report["sections"]:
        assert section["error"] is None
        assert section["results"], section["name"]
        for r in section["results"]:
            assert math.isfinite(r["value"]) and r["value"] >= 0, r
            if r["baseline"] is not None:
                assert r["ratio"] is not None and math.isfinite(r["ratio"]) and r["ratio"] > 0, r
            if r["target"] is not None:
                assert r["met"] in (True, False), r
    by_metric = {(r["scenario"], r["metric"]): r for s in report["sections"] for r in s["results"]}
    # Facts that hold whatever the machine's speed: dedup writes no chunk bytes, and both
    # baselines of the rolling history store more than our packs do.
    assert by_metric[("large_array", "unchanged re-save: new bytes (max)")]["met"] is True
    rolling = {m: r["value"] for (s, m), r in by_metric.items() if s == "rolling"}
    packs = rolling["ours (shared): bytes on disk, packs only"]
    assert packs < next(v for m, v in rolling.items() if m.startswith("Recorder: bytes on disk"))
    assert packs < next(v for m, v in rolling.items() if m.startswith("seed: bytes on disk"))
    text = out_md.read_text()
    assert "python -m tools.bench --quick" in text and "Load average" in text
    assert all(f"## {s['title']}" in text for s in report["sections"])


def test_ratios_targets_and_notes_follow_the_documented_conventions():
    ours = Result("s", "save", 2.0, "ms")
    r = faster_than(ours, "base", Timing((0.010, 0.012, 0.008)), need=5)
    assert r.ratio == pytest.approx(5.0) and r.met is True and r.target == "≥ 5×"
    slow = faster_than(Result("s", "save", 4.0, "ms"), "base", 0.010, need=5)
    assert slow.ratio == pytest.approx(2.5) and slow.met is False
    assert explain(slow, "why").note == "why" and explain(r, "why").note == ""
    size = relative_to(Result("s", "bytes", 3.0, "MB"), "Recorder", 20.0, "<=", 0.2)
    assert size.ratio == pytest.approx(0.15) and size.met is True
    assert bounded(Result("s", "load", 3.5, "ms"), "<=", 3).met is False
    run = Run("python -m tools.bench", False, _machine(), (1.0, 1.0, 1.0), (2.0, 1.5, 1.0),
              (Section("s", "S", "about", (slow, size), 1.0),))
    text = markdown(run)
    assert "**missed**" in text and "1 met, 1 missed" in text and "- *save*: " not in text
    assert close_call(r) and not close_call(slow) and status(r) == "met (within 10 %)"


def _machine() -> dict:
    return {"date": "today", "cpu": "cpu", "cores": 2, "memory_gib": 1.0, "disk": "disk", "os": "os",
            "python": "3.11", "versions": {"numpy": "2"}}


def test_phase_breakdown_of_a_real_save_adds_up_to_its_total(tmp_path, make_md):
    model = {"w": bytes(range(256)) * 2000, "params": {"a": 1}}
    with ModelStore(tmp_path / "cas") as store:
        per_phase, totals = phases.breakdown(lambda: store.save_model(model, make_md("m")), 3)
    assert {"pickling", "chunking (FastCDC)", "pack write + fsync", "log commit (write + fsync + link)"} <= set(per_phase)
    for i, total in enumerate(totals):
        assert sum(v[i] for v in per_phase.values()) == pytest.approx(total, rel=1e-6)
    # Instrumentation is removed afterwards: the core's functions are the originals again.
    from cas_repo.objects.local import LocalBackend

    assert not hasattr(LocalBackend.put, "__wrapped__")


def test_seed_baseline_round_trips_and_overwrites_like_the_seed(tmp_path, make_md):
    seed = SeedRepository(tmp_path / "seed", fsync=True)
    seed.save_model({"v": 1}, make_md("m1"))
    seed.save_model({"v": 2}, make_md("m1"))
    model, md = seed.load_model("m1")
    assert model == {"v": 2} and md.model_id == "m1"
    assert sorted(p.name for p in (tmp_path / "seed" / "models" / "m1").iterdir()) == ["metadata.json", "model.pkl"]
    with pytest.raises(FileNotFoundError):
        seed.load_model("absent")
