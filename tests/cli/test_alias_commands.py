"""``cas-repo alias set|rm|ls|log``, and aliases in ``ls``, ``show``, ``diff`` and ``lineage``."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for v in (1, 2, 3):
            store.save_model({"v": v}, ModelMetadata("lgb", "csi300", "LGBM", {"v": v}, {"IC": v / 100},
                                                     datetime(2026, 1, v), parents=[f"lgb@{v - 1}"] if v > 1 else []))
    return ["--repo", str(root), "--catalog", str(tmp_path / "index.duckdb")]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_set_move_ls_log_rm(repo, capsys):
    assert run(capsys, *repo, "alias", "set", "lgb", "prod", "2")[:2] == (0, "lgb@prod: version 2\n")
    assert run(capsys, *repo, "alias", "set", "lgb", "prod", "3")[:2] == (0, "lgb@prod: version 2 -> 3\n")
    assert run(capsys, *repo, "alias", "set", "lgb", "prod", "2")[1] == "lgb@prod: version 3 -> 2\n"
    code, out, _ = run(capsys, *repo, "alias", "ls", "lgb", "--json")
    assert (code, json.loads(out)) == (0, {"prod": 2})
    code, out, _ = run(capsys, *repo, "--json", "alias", "log", "lgb", "prod")
    assert [(m["from_version"], m["to_version"]) for m in json.loads(out)] == [(None, 2), (2, 3), (3, 2)]
    code, out, _ = run(capsys, *repo, "alias", "log", "lgb")
    assert code == 0 and "removed" not in out and out.count("prod") == 3
    code, out, _ = run(capsys, *repo, "ls")
    assert "prod=2" in out
    code, out, _ = run(capsys, *repo, "show", "lgb@prod")
    assert code == 0 and "version: 2" in out and "aliases: prod" in out
    code, out, _ = run(capsys, *repo, "--json", "diff", "lgb@prod", "lgb@3")
    assert (json.loads(out)["a"]["version"], json.loads(out)["b"]["version"]) == (2, 3)
    code, out, _ = run(capsys, *repo, "--json", "lineage", "lgb@prod")
    assert json.loads(out)["version"] == 2
    assert run(capsys, *repo, "alias", "rm", "lgb", "prod")[1] == "lgb@prod: removed (was 2)\n"
    assert run(capsys, *repo, "alias", "rm", "lgb", "prod")[1] == "lgb@prod: was not set\n"


@pytest.mark.parametrize("argv,code,says", [
    (["alias", "set", "lgb", "Prod", "1"], 2, "lowercase"),
    (["alias", "set", "lgb", "prod", "0"], 2, "positive integer"),
    (["alias", "set", "lgb", "prod", "9"], 1, "does not exist"),
    (["alias", "set", "nope", "prod", "1"], 1, "does not exist"),
    (["show", "lgb@staging"], 1, "has no alias 'staging'"),
    (["show", "lgb@a@b"], 2, "exactly one '@'"),
    (["alias"], 2, "usage"),
])
def test_errors_say_what_to_do_and_set_the_exit_code(repo, capsys, argv, code, says):
    got, _, err = run(capsys, *repo, *argv)
    assert got == code and says in err


def test_alias_ls_without_a_model_lists_every_alias_in_the_store(repo, tmp_path, capsys):
    with ModelStore(repo[1]) as store:
        store.save_model({"v": 1}, ModelMetadata("arima", "csi300", "Linear", {}, {"IC": 0.01}, datetime(2026, 1, 4)))
        store.set_alias("lgb", "prod", 3)
        store.set_alias("lgb", "shadow", 2)
        store.set_alias("arima", "prod", 1)
        store.set_alias("lgb", "prod", 2)
        store.set_alias("lgb", "shadow", 3)
        store.remove_alias("lgb", "shadow")
    code, out, _ = run(capsys, *repo, "alias", "ls", "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["model_id"], r["alias"], r["version"]) for r in rows] == [("arima", "prod", 1),
                                                                                        ("lgb", "prod", 2)]
    assert all(r["moved_at"] and r["moved_by"] and r["author"] for r in rows)
    code, out, _ = run(capsys, *repo, "alias", "ls")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["model_id", "alias", "version", "moved_at", "(UTC)", "by", "writer"]
    assert [line.split()[:3] for line in lines[2:]] == [["arima", "prod", "1"], ["lgb", "prod", "2"]]
    assert run(capsys, "--repo", str(tmp_path / "empty"), "alias", "ls", "--json")[:2] == (0, "[]\n")
