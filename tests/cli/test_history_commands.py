"""The everyday and SQL commands through their real entry points, on a real store."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _md(model_id: str, ic: float, **kw) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name=kw.pop("experiment", "csi300"), model_type="LGBM",
                         hyperparameters=kw.pop("hp", {"num_leaves": 31, "learning_rate": 0.05}),
                         metrics={"IC": ic, "Rank IC": ic + 0.01}, created_at=datetime(2026, 1, 5), **kw)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """lgbm: v1, v2 (parent v1, num_leaves 63), tag, delete, undelete, rollback to v1 (v3);
    mlp: v1 (parent lgbm@2), then deleted. Events one hour apart from 2026-01-05 10:00Z."""
    root = tmp_path_factory.mktemp("cli") / "cas"
    ticks = iter(T0 + timedelta(hours=h) for h in range(1, 100))
    with ModelStore(root, clock=lambda: next(ticks)) as store:
        store.save_model(list(range(50_000)), _md("lgbm", 0.04, tags={"stage": "dev"}))
        store.save_model(list(range(50_001)), _md("lgbm", 0.05, parents=["lgbm@1"],
                                                  hp={"num_leaves": 63, "learning_rate": 0.05}))
        store.set_tags("lgbm", {"stage": "prod"})
        store.delete_model("lgbm")
        store.undelete_model("lgbm")
        store.rollback("lgbm", 1)
        store.save_model("weights", _md("mlp", 0.02, experiment="csi500", parents=["lgbm@2"]))
        store.delete_model("mlp")
    return root


def run(repo: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = main(["--repo", str(repo), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_log_shows_every_event_with_versions_and_tags(repo, capsys):
    code, out, _ = run(repo, "log", "lgbm", capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["seq", "at", "(UTC)", "event", "version"]
    events = [line.split()[3] for line in lines[2:]]
    assert events == ["save", "save", "tag", "delete", "undelete", "rollback"]
    assert "tags stage=prod" in lines[4] and "rollback to v1" in lines[7]
    code, out, _ = run(repo, "log", "lgbm", "--json", capsys=capsys)
    data = json.loads(out)
    assert [e["event"] for e in data] == events
    assert data[2]["tags_set"] == {"stage": "prod"} and "metadata" not in data[2]
    assert data[1]["metadata"]["parents"] == ["lgbm@1"]


def test_ls_and_show_as_of_a_past_time(repo, capsys):
    # 12:30: lgbm v2 saved and tagged prod, not yet deleted; mlp not yet saved.
    code, out, _ = run(repo, "--json", "ls", "--as-of", "2026-01-05T12:30Z", capsys=capsys)
    assert code == 0
    assert [(m["model_id"], m["version"], m["tags"]) for m in json.loads(out)] == [("lgbm", 2, {"stage": "prod"})]
    code, out, err = run(repo, "show", "lgbm", "--as-of", "2026-01-05T13:30Z", capsys=capsys)
    assert code == 1 and "was deleted as of" in err and out == ""
    code, out, _ = run(repo, "ls", "--deleted", "--as-of", "2026-01-05T13:30Z", "--json", capsys=capsys)
    assert [(m["model_id"], m["deleted"]) for m in json.loads(out)] == [("lgbm", True)]
    code, out, _ = run(repo, "ls", capsys=capsys)
    assert "lgbm" in out and "mlp" not in out
    code, out, err = run(repo, "show", "mlp", "--as-of", "2026-01-05T10:30Z", capsys=capsys)
    assert code == 1 and "did not exist as of" in err
    code, out, err = run(repo, "ls", "--as-of", "last friday", capsys=capsys)
    assert code == 2 and "ISO 8601" in err


def test_diff_reports_settings_metrics_and_bytes(repo, capsys):
    code, out, _ = run(repo, "diff", "lgbm@1", "lgbm@2", "--json", capsys=capsys)
    assert code == 0
    d = json.loads(out)
    assert d["hyperparameters"] == {"num_leaves": {"a": 31, "b": 63}}
    assert d["metrics"]["IC"]["delta"] == pytest.approx(0.01)
    c = d["content"]
    assert c["shared_bytes"] > 0 and c["added_bytes"] > 0 and not d["same_content"]
    code, out, _ = run(repo, "diff", "lgbm@1", "lgbm@3", capsys=capsys)
    assert "content: identical" in out and "hyperparameters: identical" in out
    assert "bytes added          0 B" in out


def test_lineage_walks_parents_and_rollbacks(repo, capsys):
    code, out, _ = run(repo, "lineage", "lgbm@1", "--json", capsys=capsys)
    d = json.loads(out)
    assert [(n["model_id"], n["version"], n["depth"], n["relation"]) for n in d["descendants"]] == [
        ("lgbm", 2, 1, "parent"), ("lgbm", 3, 1, "rollback_of"), ("mlp", 1, 2, "parent")]
    assert d["ancestors"] == []
    code, out, _ = run(repo, "lineage", "mlp@1", "--ancestors", capsys=capsys)
    assert code == 0 and "lgbm@1" in out and "lgbm@2" in out and "descendant" not in out


def test_sql_formats(repo, capsys, tmp_path):
    q = "SELECT model_id, version, metrics['IC'] AS ic, tags FROM v_versions ORDER BY model_id, version"
    code, out, _ = run(repo, "sql", q, capsys=capsys)
    assert code == 0 and out.splitlines()[-1] == "(4 rows)" and "stage=prod" in out
    code, out, _ = run(repo, "sql", q, "--format", "csv", capsys=capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[1] == {"model_id": "lgbm", "version": "2", "ic": "0.05", "tags": '{"stage": "prod"}'}
    code, out, _ = run(repo, "sql", q, "--json", capsys=capsys)
    assert json.loads(out)[0] == {"model_id": "lgbm", "version": 1, "ic": 0.04, "tags": {"stage": "dev"}}
    target = tmp_path / "out.parquet"
    code, _, _ = run(repo, "sql", q, "--format", "parquet", "--out", str(target), capsys=capsys)
    assert code == 0 and pq.read_table(target).num_rows == 4
    code, out, _ = run(repo, "sql", "SELECT count(*) AS n FROM v_versions WHERE model_id = ?",
                       "--params", '["lgbm\' OR 1=1 --"]', "--json", capsys=capsys)
    assert json.loads(out) == [{"n": 0}]


def test_usage_and_not_found_exit_codes(repo, capsys):
    assert run(repo, "sql", "DELETE FROM versions", capsys=capsys)[0] == 2
    assert run(repo, "sql", "SELEC 1", capsys=capsys)[0] == 2
    assert run(repo, "sql", "SELECT 1", "--format", "parquet", capsys=capsys)[0] == 2
    assert run(repo, "show", "nope", capsys=capsys)[0] == 1
    assert run(repo, "lineage", "lgbm@9", capsys=capsys)[0] == 1
    assert run(repo, "diff", "lgbm@1", "nope@1", capsys=capsys)[0] == 1
    assert run(repo, "show", "lgbm@x", capsys=capsys)[0] == 1  # an alias that is not set
    code, _, err = run(repo, "show", "lgbm@X", capsys=capsys)  # neither a version nor an alias name
    assert code == 2 and err.count("\n") == 1


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "cas_repo.cli", *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=120, check=False)


def test_real_entry_point_sql_export_and_refusal(repo, tmp_path):
    done = _cli("--repo", str(repo), "sql", "SELECT model_id, head_version FROM v_models ORDER BY 1",
                "--format", "csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['"model_id","head_version"', '"lgbm",3', '"mlp",1']
    done = _cli("--repo", str(repo), "export", str(tmp_path / "snap"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"]["v_versions"] == 4
    done = _cli("--repo", str(repo), "sql", "SELECT 1; DROP TABLE versions", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("cas-repo: error: refused 2 statements") and done.stderr.count("\n") == 1
