"""import-mlruns against a real Qlib Recorder tree made here: ≥ 10 runs with duplicates."""

from __future__ import annotations

import hashlib
import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cas_repo import ModelStore
from cas_repo.cli import main
from cas_repo.errors import CasRepoError
from cas_repo.qlib_support import synthetic as syn
from cas_repo.qlib_support.mlruns import MlrunsError, open_runs
from cas_repo.qlib_support.mlruns_import import WORKFLOW_ARTIFACT, import_mlruns, import_runs, scan_mlruns
from cas_repo.qlib_support.recorder import wait_for_logging


class Unlisted:
    """Pickled by reference to this test module: outside the unpickling allowlist."""

    def __init__(self) -> None:
        self.x = 1


def _tree_digest(root: Path) -> str:
    """Every path, size, mtime and content under ``root``: any change shows."""
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files) + [d + "/" for d in dirs]:
            path = Path(dirpath) / name.rstrip("/")
            st = path.stat()
            h.update(f"{path.relative_to(root)}|{st.st_mtime_ns}|{st.st_size}|{st.st_mode}\n".encode())
            if path.is_file():
                h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """An mlruns tree of 13 runs and the models each run saved (by run id)."""
    tmp = tmp_path_factory.mktemp("qlib")
    ds = syn.make_dataset(n_instruments=20, n_days=100)
    chain = [syn.train_lgbm(ds, num_boost_round=60)]
    for _ in range(4):
        chain.append(syn.continue_training(chain[-1], ds, 5))
    saved: dict[str, dict[str, object]] = {}
    notes = tmp / "notes.txt"
    notes.write_text("free text, not a model\n")
    with syn.offline_qlib(tmp) as R:
        def run(exp, name, objects, **extra):
            with R.start(experiment_name=exp, recorder_name=name):
                rec = R.get_recorder()
                R.log_params(round=name, **extra)
                for step, ic in enumerate((0.01, 0.03, 0.02)):  # the last step's value counts
                    R.log_metrics(step=step, IC=ic + len(saved) / 100)
                R.set_tags(owner="research")
                if objects:
                    wait_for_logging(rec)  # qlib logs from a thread; save_objects reads the run
                    R.save_objects(**objects)
            saved[rec.id] = objects
            return rec

        for i, m in enumerate(chain):  # continued training: each run shares most bytes
            run("rolling", f"r{i}", {"trained_model": m})
        for i in range(3):  # duplicates: the same model saved again and again
            run("dups", f"d{i}", {"model.pkl": chain[0]})
        rec = run("misc", "mixed", {"pred.pkl": pd.DataFrame({"score": np.arange(5.0)})})
        rec.save_objects(local_path=str(notes))  # a text artifact
        run("misc", "unlisted", {"model.pkl": Unlisted()})
        run("misc", "empty", {})
        run("misc", "tensor", {"weights.pkl": _torch_tensor_or_list()})
        gone = run("misc", "deleted", {"model.pkl": [1, 2, 3]})
        R.get_exp(experiment_name="misc").delete_recorder(gone.id)
    return tmp / "mlruns", saved, ds, chain


def _torch_tensor_or_list():
    try:
        import torch
    except ImportError:
        return [0.0, 0.0]
    return torch.zeros(3)


@pytest.fixture
def fresh(tmp_path):
    with ModelStore(tmp_path / "cas") as s:
        yield s


def test_runs_are_read_without_mlflow(tree):
    mlruns, _, _, _ = tree
    runs = scan_mlruns(mlruns)
    assert len(runs) == 13
    assert [r.run_name for r in runs if r.experiment_name == "rolling"] == [f"r{i}" for i in range(5)]
    first = runs[0]
    assert first.params["round"] == "r0" and first.tags["owner"] == "research"
    assert first.metrics == {"IC": pytest.approx(0.02)}
    assert first.status == "FINISHED" and first.start_time.tzinfo is not None
    assert first.artifacts() == ["trained_model"]
    assert [r.deleted for r in runs].count(True) == 1


def test_import_creates_versions_with_the_run_metadata(tree, fresh):
    mlruns, saved, ds, chain = tree
    before = _tree_digest(mlruns)
    report = import_mlruns(fresh, mlruns)
    assert report.runs_seen == 13
    assert report.versions_created == 5 + 3  # rolling, dups; not pred.pkl (predictions)
    assert report.runs_with_objects == 10  # all but the empty, the deleted and the mixed run
    history = fresh.history("rolling.trained_model")
    runs = {r.run_id: r for r in scan_mlruns(mlruns)}
    assert len(history) == 5
    for md, model in zip(history, chain):
        run = runs[md.qlib_recorder_id]
        assert md.created_at == run.start_time and md.experiment_name == "rolling"
        assert md.hyperparameters == run.params and md.metrics == run.metrics
        assert md.tags["owner"] == "research" and md.model_type == "LGBM"
        assert md.lineage["recorder"]["artifact"] == "trained_model"
        assert md.lineage["recorder"]["artifact_blake3"]
        loaded, _ = fresh.load_model(md.model_id, md.version)
        np.testing.assert_array_equal(syn.predict(loaded, ds), syn.predict(model, ds))
    mixed = next(rid for rid, r in runs.items() if r.run_name == "mixed")
    assert (mixed, "pred.pkl", WORKFLOW_ARTIFACT) in {(i.run_id, i.artifact, i.reason) for i in report.skipped}
    named = import_mlruns(fresh, mlruns, experiment="misc", artifacts=["pred.pkl"])
    assert named.created == ("misc.pred@1",)  # asked for by name, it is imported
    pd.testing.assert_frame_equal(fresh.load_model("misc.pred")[0], saved[mixed]["pred.pkl"])
    assert len(fresh.history("dups.model")) == 3
    assert _tree_digest(mlruns) == before  # nothing in mlruns was touched


def test_duplicates_and_continued_training_add_only_distinct_content(tree, fresh):
    mlruns, _, _, _ = tree
    dups = scan_mlruns(mlruns, "dups")
    one = import_runs(fresh, dups[:1])
    rest = import_runs(fresh, dups)
    assert one.versions_created == 1 and rest.versions_created == 2 and rest.already_imported == 1
    # Two more copies of the same model cost two small event records, not two models.
    assert rest.new_physical_bytes < 4096 < one.new_physical_bytes
    rolling = import_mlruns(fresh, mlruns, experiment="rolling")
    # The first model is already stored (the dups); the chain adds only its new trees.
    assert rolling.new_physical_bytes < 0.25 * rolling.artifact_bytes


def test_reimport_adds_nothing_and_interrupted_import_resumes(tree, fresh):
    mlruns, _, _, _ = tree
    runs = scan_mlruns(mlruns)
    calls = []

    def stop_after_four(n):
        calls.append(n)
        if len(calls) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_runs(fresh, runs, progress=stop_after_four)
    partial = fresh.stats().versions
    assert 0 < partial < 8
    resumed = import_runs(fresh, runs)
    assert resumed.already_imported == partial and resumed.versions_created == 8 - partial
    again = import_runs(fresh, runs)
    assert again.versions_created == 0 and again.already_imported == 8
    assert again.new_physical_bytes == 0 and fresh.stats().versions == 8


def test_refused_and_skipped_artifacts_are_reported(tree, fresh):
    mlruns, _, _, _ = tree
    report = import_mlruns(fresh, mlruns, experiment="misc")
    runs = {r.run_name: r.run_id for r in scan_mlruns(mlruns, "misc")}
    refused = {(i.run_id, i.artifact): i.reason for i in report.refused}
    name = f"{__name__}.Unlisted"
    reason = refused[(runs["unlisted"], "model.pkl")]
    assert name in reason and f"allow_globals({name!r})" in reason
    assert not report.ok
    skipped = {(i.run_id, i.artifact): i.reason for i in report.skipped}
    assert skipped[(runs["mixed"], "notes.txt")] == "not a pickle"
    assert skipped[(runs["empty"], None)] == "the run saved no objects"
    assert skipped[(runs["deleted"], None)] == "the run is deleted in MLflow"
    if (runs["tensor"], "weights.pkl") in refused:  # with torch installed
        assert "torch.load" in refused[(runs["tensor"], "weights.pkl")]
    with pytest.raises(CasRepoError, match="use_qlib_recorder"):
        import_runs(ModelStore(fresh.url, use_qlib_recorder=True), [])


def test_cli_import_mlruns(tree, tmp_path):
    mlruns, _, _, _ = tree
    repo = str(tmp_path / "cli")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--repo", repo, "import-mlruns", str(mlruns), "--experiment", "rolling",
                     "--exclusive"])
    text = out.getvalue()
    assert code == 0, text
    assert "runs seen         5" in text and "versions created  5 (0 already imported)" in text
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--repo", repo, "--json", "import-mlruns", str(mlruns), "--artifact", "model.pkl"])
    report = json.loads(out.getvalue())
    assert code == 1  # the Unlisted pickle was refused
    assert report["versions_created"] == 3 and report["already_imported"] == 0
    assert [i["artifact"] for i in report["refused"]] == ["model.pkl"]
    assert main(["--repo", repo, "import-mlruns", str(tmp_path / "nothing")]) == 1
    assert main(["--repo", repo, "import-mlruns", str(mlruns), "--experiment", "nope"]) == 1


def test_sqlite_tracking_store(tmp_path, fresh):
    db = tmp_path / "q" / "mlflow.db"
    exp_manager = {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                   "kwargs": {"uri": f"sqlite:///{db}", "default_exp_name": "Experiment"}}
    with syn.offline_qlib(tmp_path / "q", exp_manager=exp_manager) as R:
        for i in range(2):
            with R.start(experiment_name="sql", recorder_name=f"s{i}"):
                R.log_params(i=i)
                R.log_metrics(step=0, IC=0.5)
                R.log_metrics(step=1, IC=0.1 * i)
                wait_for_logging(R.get_recorder())
                R.save_objects(**{"model.pkl": {"w": i}})
    before = db.read_bytes()
    report = import_mlruns(fresh, f"sqlite:///{db}")
    assert report.versions_created == 2 and report.ok
    assert db.read_bytes() == before
    history = fresh.history("sql.model")
    assert [h.metrics["IC"] for h in history] == [0.0, 0.1]
    assert [h.hyperparameters["i"] for h in history] == ["0", "1"]
    assert fresh.load_model("sql.model")[0] == {"w": 1}
    assert import_mlruns(fresh, db).already_imported == 2  # a bare .db path works too


def test_not_an_mlruns_tree(tmp_path):
    with pytest.raises(MlrunsError):
        list(open_runs(tmp_path))
    with pytest.raises(MlrunsError):
        list(open_runs(tmp_path / "missing"))
