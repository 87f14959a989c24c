"""The benchmark harness runs end to end at quick size and yields sane numbers (not timings)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cas_repo import ModelStore
from tools.bench import phases
from tools.bench.framework import (
    Result,
    Timing,
    bounded,
    explain,
    faster_than,
    median_ci,
    no_slower_than,
    percentile,
    relative_to,
    within,
)
from tools.bench.report import Run, Section, close_call, markdown, status
from tools.bench.seed_baseline import SeedRepository

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.xdist_group("processes")


@pytest.mark.slow
def test_quick_harness_runs_every_scenario_and_reports_sane_numbers(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    env = dict(os.environ, CAS_BENCH_TMP=str(tmp_path), CAS_BENCH_CACHE=str(tmp_path / "cache"))
    env.pop("CAS_REPO_INDEX_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "--json", str(out_json),
                           "--out", str(out_md)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
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
            if r["ci"] is not None:
                assert r["ci"][0] <= r["ci"][1], r
    by_metric = {(r["scenario"], r["metric"]): r for s in report["sections"] for r in s["results"]}
    # Facts that hold whatever the machine's speed: dedup writes no chunk bytes, and both
    # baselines of the rolling history store more than our packs and log do.
    assert by_metric[("large_array", "unchanged re-save: new bytes (max)")]["met"] is True
    assert by_metric[("lightgbm", "unchanged re-save: new pack bytes on disk")]["value"] == 0
    rolling = {m: r["value"] for (s, m), r in by_metric.items() if s == "rolling"}
    store = rolling["ours: bytes on disk, store folder (packs + log)"]
    assert store < next(v for m, v in rolling.items() if m.startswith("Recorder: bytes on disk"))
    assert store < next(v for m, v in rolling.items() if m.startswith("seed: bytes on disk"))
    # Every scenario that names a target measured the ones the design set.
    metrics = {m for (_s, m) in by_metric}
    for needed in ("save (new model, store in use)", "load (latest version, warm cache)", "unchanged re-save",
                   "8 processes: longest save (wait included)",
                   "after another process's save: next load_model of that model"):
        assert needed in metrics, needed
    assert any(m.startswith("2 processes × ") for m in metrics)
    assert any(m.startswith("first list_models() in a new process") for m in metrics)
    assert any(m.startswith("index catch-up: fold ") for m in metrics)
    assert re.fullmatch(r"≤ \S+ ms \(load by version \S+ \+ 0\.2\)",
                        by_metric[("aliases", "tiny model: load via model@alias")]["target"])
    startup = {m: r for (s, m), r in by_metric.items() if s == "startup"}
    assert startup["import cas_repo (timed inside the process)"]["target"] == "≤ 100 ms"
    for command in ("cas-repo --help", "cas-repo ls (6 models, 18 versions)"):
        assert startup[command]["target"] == "≤ 300 ms", command
    assert any(m.startswith("head lookup p50") for m in metrics) and any(m.startswith("history() of a ")
                                                                         for m in metrics)
    # The save's phase rows account for its time: none is negative and they include the
    # durable writes and the log commit.
    save_phases = {m.split("phase: ", 1)[1]: r["value"] for (s, m), r in by_metric.items()
                   if s == "lightgbm" and m.startswith("save phase: ")}
    assert {"pickling", "manifest", "pack write + fsync", "log commit (write + fsync + link)"} <= set(save_phases)
    # The phase timers find the functions they wrap where the operations now live.
    load_phases = {m.split("phase: ", 1)[1] for (s, m) in by_metric if s == "lightgbm" and m.startswith("load phase: ")}
    assert {"unpickling", "reassemble", "verify (BLAKE3)", "decompress"} <= load_phases
    text = out_md.read_text()
    assert "python -m tools.bench --quick" in text and "Load average" in text
    assert all(f"## {s['title']}" in text for s in report["sections"])
    # The notes are written from this run's figures: one per topic, none skipped for want of one.
    notes = text.split("## Notes", 1)[1].split("\n## ", 1)[0]
    for topic in ("Within noise", "Save of the 300 KB model", "Load", "Unchanged re-save", "Two processes",
                  "The store of", "history() at", "Large models"):
        assert f"- **{topic}" in notes or (topic == "Within noise" and "No verdict is within noise" in notes), topic


def test_a_saved_run_renders_again_the_same(tmp_path):
    from tools.bench.report import as_json, from_json

    r = faster_than(Timing((0.002, 0.003, 0.002)).result("s", "save"), "base", Timing((0.01, 0.011, 0.012)), 5)
    run = Run("python -m tools.bench", False, _machine(), (1.0, 1.0, 1.0), (2.0, 1.5, 1.0),
              (Section("s", "S", "about", (r,), 1.0),))
    again = from_json(as_json(run))
    assert again.results == run.results and markdown(again) == markdown(run)


def test_notes_leave_out_what_a_partial_run_lacks():
    from tools.bench.notes import notes

    run = Run("python -m tools.bench --only limits", True, _machine(), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0),
              (Section("limits", "Machine limits", "", (Result("limits", "BLAKE3", 5.0, "GB/s"),), 1.0),))
    assert notes(run) == "- No verdict is within noise: each figure is more than 10 % from its bound and its " \
                         "bound lies outside the figure's confidence interval."


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
    assert close_call(r) and not close_call(slow) and status(r) == "met (within noise)"


def test_targets_relative_to_a_baseline_and_their_noise():
    base = Timing((0.004, 0.004, 0.004, 0.004, 0.004, 0.004, 0.004))
    ok = within(Timing((0.005,) * 7).result("s", "save"), "pickle.dumps", base, 1.5)
    assert ok.met is True and ok.target.startswith("≤ 5.5 ms") and "pickle.dumps 4 + 1.5" in ok.target
    assert within(Timing((0.006,) * 7).result("s", "save"), "pickle.dumps", base, 1.5).met is False
    # At most 1.2× the baseline's time; the ratio stays a speed-up (baseline ÷ ours).
    load = no_slower_than(Timing((0.0045,) * 7).result("s", "load"), "seed", base, 1.2)
    assert load.ratio == pytest.approx(4 / 4.5) and load.met is True
    assert no_slower_than(Timing((0.005,) * 7).result("s", "load"), "seed", base, 1.2).met is False
    # A bound inside the median's confidence interval is within noise even far from 10 %.
    spread = Timing(tuple(0.001 * x for x in range(1, 12))).result("s", "op")
    assert spread.ci[0] < 6 < spread.ci[1]
    assert close_call(bounded(spread, "<=", 8)) and not close_call(bounded(spread, "<=", 50))


def test_median_ci_and_percentile():
    assert median_ci((3.0, 1.0, 2.0)) == (1.0, 3.0)  # few runs: the whole range
    xs = tuple(float(i) for i in range(100))
    lo, hi = median_ci(xs)
    assert 30 < lo < 49.5 < hi < 70
    assert percentile(list(range(1, 101)), 99) == 99 and percentile([5.0], 99) == 5.0


def _machine() -> dict:
    return {"date": "today", "cpu": "cpu", "cores": 2, "memory_gib": 1.0, "disk": "disk", "os": "os",
            "python": "3.11", "versions": {"numpy": "2"}}


def test_phase_breakdown_of_a_real_save_and_load_adds_up_to_its_total(tmp_path, make_md):
    model = {"w": bytes(range(256)) * 2000, "params": {"a": 1}}
    with ModelStore(tmp_path / "cas") as store:
        per_phase, totals = phases.breakdown(lambda: store.save_model(model, make_md("m")), 3)
        load_phases, load_totals = phases.breakdown(lambda: store.load_model("m"), 3)
    assert {"pickling", "chunking (FastCDC)", "pack write + fsync",
            "log commit (write + fsync + link)"} <= set(per_phase)
    assert {"unpickling", "verify (BLAKE3)", "pack read"} <= set(load_phases)
    for phases_of, totals_of in ((per_phase, totals), (load_phases, load_totals)):
        for i, total in enumerate(totals_of):
            assert sum(v[i] for v in phases_of.values()) == pytest.approx(total, rel=1e-6)
    # Instrumentation is removed afterwards: the core's functions are the originals again.
    from cas_repo.log.log import Log
    from cas_repo.objects.local import LocalBackend

    assert not hasattr(LocalBackend.put, "__wrapped__") and not hasattr(Log.decode, "__wrapped__")


def test_seed_baseline_round_trips_and_overwrites_like_the_seed(tmp_path, make_md):
    seed = SeedRepository(tmp_path / "seed", fsync=True)
    seed.save_model({"v": 1}, make_md("m1"))
    seed.save_model({"v": 2}, make_md("m1"))
    model, md = seed.load_model("m1")
    assert model == {"v": 2} and md.model_id == "m1"
    assert sorted(p.name for p in (tmp_path / "seed" / "models" / "m1").iterdir()) == ["metadata.json", "model.pkl"]
    with pytest.raises(FileNotFoundError):
        seed.load_model("absent")
