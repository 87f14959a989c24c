"""``cas-repo policy`` and ``cas-repo maintain`` end to end; the loop; two machines at once; kill -9."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cas_repo import ModelStore
from cas_repo.cli import main
from cas_repo.maintenance import Policy, RetireModelsBelow, fsck_store, run_maintenance, set_policy
from tests.robustness.harness import REPO_ROOT, worker_env
from tests.spawned import run_together

POLICY = """\
keep_last = 2
keep_tagged = ["keep"]
grace = "0"

[[keep_best]]
metric = "IC"
n = 1

[retire_models_below]
metric = "IC"
threshold = 0.02
min_age = "0"
"""


@pytest.fixture
def repo(store_dir, make_md):
    with ModelStore(store_dir, backend_options={"fsync": False}) as s:
        for i, ic in enumerate([0.09, 0.03, 0.04, 0.05, 0.06]):
            s.save_model({"w": list(range(i, i + 2_000))}, make_md("m", IC=ic))
        s.set_tags("m", {"keep": "1"}, version=2)
        for i in range(2):
            s.save_model({"w": list(range(5_000 + i, 6_000))}, make_md("weak", IC=0.001))
        s.save_model({"w": [1]}, make_md("pinned", IC=0.001))
        s.set_alias("pinned", "prod", 1)
    return store_dir


def run(capsys, repo, *args):
    code = main(["--repo", str(repo), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_policy_and_maintain_from_the_command_line(repo, capsys, tmp_path):
    code, _, err = run(capsys, repo, "maintain")
    assert code == 1 and "cas-repo policy set FILE" in err
    file = tmp_path / "policy.toml"
    file.write_text(POLICY)
    code, out, _ = run(capsys, repo, "policy", "set", str(file), "--dry-run")
    assert code == 0 and "+ keep_last = 2" in out and "would retire m@3" in out and "model weak" in out
    assert run(capsys, repo, "policy", "show")[0] == 1  # a dry run set nothing
    code, out, _ = run(capsys, repo, "policy", "set", str(file))
    assert code == 0 and "policy set in log commit" in out
    code, out, _ = run(capsys, repo, "policy", "show")
    assert code == 0 and out.splitlines()[1:] == Policy.from_json(
        json.loads(run(capsys, repo, "policy", "show", "--json")[1])["policy"]).to_toml().splitlines()
    code, out, _ = run(capsys, repo, "maintain", "--dry-run")
    assert code == 0 and "would retire 1 version " in out and "dry run: nothing changed" in out
    code, out, _ = run(capsys, repo, "--json", "maintain")
    report = json.loads(out)
    assert code == 0 and [v["ref"] for v in report["retired"]] == ["m@3"]
    assert [m["model_id"] for m in report["models_retired"]] == ["weak"]
    assert sorted(report["gc"]["purged"]) == ["m@3", "weak@1", "weak@2"] and report["gc"]["freed_bytes"] > 0
    kept = {v["ref"]: v["reasons"] for v in report["kept"]}
    assert kept["m@1"] == ["best 1 by IC"] and kept["m@2"] == ["tag keep"] and kept["pinned@1"][0] == "head"
    code, out, _ = run(capsys, repo, "policy", "clear")
    assert code == 0 and "cleared in log commit" in out
    code, out, _ = run(capsys, repo, "policy", "history")
    assert code == 0 and "set the policy" in out and "cleared the policy" in out
    assert fsck_store(repo).clean


def test_a_bad_policy_file_is_a_usage_error(repo, capsys, tmp_path):
    file = tmp_path / "policy.toml"
    file.write_text("keep_last = 0\n")
    code, _, err = run(capsys, repo, "policy", "set", str(file))
    assert code == 2 and "keep_last" in err and "at least 1" in err
    file.write_text('where = "no_such_column > 1"\n')
    code, _, err = run(capsys, repo, "policy", "set", str(file))
    assert code == 2 and "v_versions" in err


def _start(repo: Path, *args: str, crash_at: str | None = None) -> subprocess.Popen:
    env = worker_env(crash_at, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "cas_repo.cli", "--repo", str(repo), *args], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_runs_again_and_stops_cleanly_on_sigterm(repo):
    with ModelStore(repo) as s:
        set_policy(s, Policy(keep_last=2))
    proc = _start(repo, "maintain", "--every", "1s")
    runs, lines = 0, []
    try:
        deadline = time.monotonic() + 120
        while runs < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
            line = proc.stdout.readline() if ready else ""
            if not line:
                break
            lines.append(line)
            runs += line.startswith("maintain at ")
        assert runs == 2, ("".join(lines), proc.stderr.read() if proc.poll() is not None else "")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    rest = proc.stdout.read()
    assert code == 0 and "stopped after" in rest
    assert "retired 3 versions" in "".join(lines)  # the first run; the second found nothing left


@pytest.mark.parametrize("crash_at", ["after-commit", "after-commit#2", "inside-transaction"])
def test_kill_9_anywhere_in_a_run_then_the_next_run_finishes_the_job(repo, crash_at):
    with ModelStore(repo) as s:
        set_policy(s, Policy.from_json({"keep_last": 2, "grace": "0", "retire_models_below": {
            "metric": "IC", "threshold": 0.02, "min_age": "0"}}))
    proc = _start(repo, "maintain", crash_at=crash_at)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert fsck_store(repo).errors == ()
    with ModelStore(repo) as s:
        run_maintenance(s)
        assert run_maintenance(s).retired == ()
        with s.ledger.current() as st:
            states = {m: [v.mark for v in e.versions] for m, e in st.models.items()}
            deleted = {m for m, e in st.models.items() if e.deleted}
        assert states["m"] == ["purge", "purge", "purge", None, None] and deleted == {"weak"}
        assert states["weak"] == ["purge", "purge"] and states["pinned"] == [None]
        for m in ("m", "pinned"):
            s.load_model(m)
    assert fsck_store(repo).clean


# -- two machines maintaining at once while a third saves ------------------------------------

TWO_MACHINE_POLICY = Policy(keep_last=2, keep_tagged=("keep",), grace=timedelta(0),
                            retire_models_below=RetireModelsBelow("IC", 0.02, min_age=timedelta(0)))


def _maintainer(repo: str, catalog: str, start, results) -> None:
    # Each process has an index of its own, as another machine would.
    with ModelStore(repo, catalog=catalog, backend_options={"fsync": False}) as s:
        start.wait()
        retired = []
        for _ in range(3):
            report = run_maintenance(s)
            retired += [v.ref for v in report.retired]
        results.put(("maintain", retired))


def _saver(repo: str, catalog: str, start, results) -> None:
    from cas_repo import ModelMetadata

    with ModelStore(repo, catalog=catalog, backend_options={"fsync": False}) as s:
        start.wait()
        saved = []
        for i in range(8):
            model_id = "m" if i % 2 else "fresh"
            md = ModelMetadata(model_id=model_id, experiment_name="e", model_type="LGBM", hyperparameters={},
                               metrics={"IC": 0.05}, created_at=datetime(2026, 1, 1))
            saved.append(s.save_model({"w": list(range(i, i + 3_000))}, md))
        results.put(("save", saved))


def test_two_machines_maintaining_at_once_while_a_third_saves(repo, tmp_path):
    with ModelStore(repo) as s:
        set_policy(s, TWO_MACHINE_POLICY)
    roles = ["maintain", "maintain", "save"]
    out = run_together(_role, [(str(repo), str(tmp_path / f"index-{i}.duckdb"), r) for i, r in enumerate(roles)],
                       timeout=90, what="a maintain or save process")
    retired = [r for kind, r in out if kind == "maintain"]
    assert not set(retired[0]) & set(retired[1])  # each change committed once
    report = fsck_store(repo)
    assert report.clean, [f.code for f in report.findings]
    with ModelStore(repo) as s:
        with s.ledger.current() as st:
            m = st.models["m"]
            assert m.versions[1].mark is None  # tagged keep
            assert [v.mark for v in m.versions[-2:]] == [None, None] and not m.deleted
            assert st.models["pinned"].versions[0].mark is None and not st.models["pinned"].deleted
            assert st.models["weak"].deleted and not st.models["fresh"].deleted
            fresh = st.models["fresh"].versions
            assert len(fresh) == 4 and [v.mark for v in fresh[-2:]] == [None, None]
            unpurged = [(mid, i + 1) for mid, e in st.models.items() if not e.deleted
                        for i, v in enumerate(e.versions) if v.mark != "purge"]
        for mid, version in unpurged:  # heads and everything the policy keeps, saved meanwhile or not
            s.load_model(mid, version)


def _role(repo: str, catalog: str, role: str, start, results) -> None:
    (_maintainer if role == "maintain" else _saver)(repo, catalog, start, results)


def test_the_policy_is_what_every_machine_reads(repo, tmp_path):
    with ModelStore(repo, catalog=tmp_path / "a.duckdb") as a, ModelStore(repo, catalog=tmp_path / "b.duckdb") as b:
        set_policy(a, Policy(keep_last=4))
        set_policy(b, Policy(keep_last=3))
        assert run_maintenance(a).policy.policy == Policy(keep_last=3)
        assert os.fspath(a.catalog.path) != os.fspath(b.catalog.path)
