"""``cas-repo ls --where/--sort/--versions``, ``leaderboard`` and ``compare``, text and JSON."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main

# One worker builds the module's store once.
pytestmark = pytest.mark.xdist_group("choose-cli")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """lgb: v1 (IC .03), v2 (IC .05, 63 leaves), prod -> v1; mlp: v1 (IC .04, mse .2)."""
    from cas_repo.qlib_support import synthetic as syn

    dataset = syn.make_dataset(syn.make_frame(n_instruments=8, n_days=40, n_features=3))
    a, b = syn.train_lgbm(dataset, num_boost_round=2), syn.train_lgbm(dataset, num_boost_round=4)
    root = tmp_path_factory.mktemp("choose")
    with ModelStore(root / "cas", catalog=root / "index.duckdb") as store:
        store.save_model(a, ModelMetadata("lgb", "csi300", "LGBM", {"num_leaves": 31}, {"IC": 0.03, "Rank IC": 0.02},
                                          datetime(2026, 1, 1)))
        store.save_model(b, ModelMetadata("lgb", "csi300", "LGBM", {"num_leaves": 63}, {"IC": 0.05, "Rank IC": 0.04},
                                          datetime(2026, 1, 2)))
        store.set_alias("lgb", "prod", 1)
        store.save_model(a, ModelMetadata("mlp", "csi500", "MLP", {"num_leaves": 31, "layers": 2},
                                          {"IC": 0.04, "mse": 0.2}, datetime(2026, 1, 3)))
    return ["--repo", str(root / "cas"), "--catalog", str(root / "index.duckdb")]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _column(out: str, i: int) -> list[str]:
    return [line.split()[i] for line in out.splitlines()[2:]]


def test_ls_sorts_models_by_their_newest_versions_metric_and_filters(repo, capsys):
    code, out, _ = run(capsys, *repo, "ls", "--sort", "IC")
    assert code == 0 and _column(out, 0) == ["lgb", "mlp"] and out.splitlines()[0].split()[2] == "IC"
    assert "prod=1" in out
    assert _column(run(capsys, *repo, "ls", "--sort", "IC", "--asc")[1], 0) == ["mlp", "lgb"]
    assert _column(run(capsys, *repo, "ls", "--sort", "Rank IC")[1], 0) == ["lgb", "mlp"]  # mlp lacks it: last
    code, out, _ = run(capsys, *repo, "ls", "--where", "params.num_leaves = 31", "--json")
    assert [m["model_id"] for m in json.loads(out)] == ["mlp"]  # lgb's newest has 63 leaves
    code, out, _ = run(capsys, *repo, "ls", "--sort", "IC", "--json")
    assert [(m["model_id"], m["aliases"]) for m in json.loads(out)] == [("lgb", {"prod": 1}), ("mlp", {})]
    code, out, _ = run(capsys, *repo, "ls", "--versions", "--where", "params.num_leaves = 31", "--sort", "IC")
    assert [line.split()[:2] for line in out.splitlines()[2:]] == [["mlp", "1"], ["lgb", "1"]]
    assert out.splitlines()[3].rstrip().endswith("prod")
    code, out, _ = run(capsys, *repo, "ls", "--versions", "--type", "LGBM", "--limit", "1", "--sort", "version",
                       "--json")
    assert [(m["model_id"], m["version"], m["aliases"]) for m in json.loads(out)] == [("lgb", 1, ["prod"])]


def test_ls_with_a_bad_filter_or_as_of_is_a_usage_error(repo, capsys):
    code, _, err = run(capsys, *repo, "ls", "--where", "metrics.IC >> 1")
    assert code == 2 and "position 13" in err and "CLAUSE [AND CLAUSE]" in err
    code, _, err = run(capsys, *repo, "ls", "--sort", "IC", "--as-of", "2026-01-01")
    assert code == 2 and "--as-of does not combine" in err


def test_leaderboard_ranks_models_by_their_best_version(repo, capsys):
    code, out, _ = run(capsys, *repo, "leaderboard", "IC")
    assert code == 0
    assert [line.split()[:4] for line in out.splitlines()[2:4]] == [
        ["1", "lgb", "2", "0.05"], ["2", "mlp", "1", "0.04"]]
    code, out, _ = run(capsys, *repo, "--json", "leaderboard", "IC", "--lower-is-better", "--experiment", "csi300")
    board = json.loads(out)
    assert [(s["model_id"], s["version"], s["aliases"]) for s in board["standings"]] == [("lgb", 1, ["prod"])]
    code, out, _ = run(capsys, *repo, "leaderboard", "loss")
    assert code == 0 and "no version has metric 'loss'" in out


def test_compare_shows_metrics_differing_settings_and_shared_bytes(repo, capsys):
    code, out, _ = run(capsys, *repo, "compare", "lgb@prod", "lgb@2", "mlp@1", "--lower-is-better", "mse")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("[1] lgb@1") and "aliases: prod" in lines[0]
    ic = next(line for line in lines if line.startswith("IC "))
    assert ic.split() == ["IC", "0.03", "0.05", "*", "0.04"]
    assert next(line for line in lines if line.startswith("layers")).split() == ["layers", "-", "-", "2"]
    code, out, _ = run(capsys, *repo, "--json", "compare", "lgb@1", "lgb@2", "mlp@1")
    c = json.loads(out)
    assert c["metrics"]["IC"]["best"] == ["lgb@2"] and c["metrics"]["mse"]["values"]["lgb@1"] is None
    assert set(c["hyperparameters"]) == {"num_leaves", "layers"}
    shared = c["bytes"]["shared"]
    assert shared["lgb@1"]["mlp@1"] == c["bytes"]["total"]["lgb@1"] > 0  # the same model bytes
    assert shared["lgb@1"]["lgb@2"] == shared["lgb@2"]["lgb@1"] < c["bytes"]["total"]["lgb@2"]
    assert c["bytes"]["shared_with_others"]["mlp@1"] == c["bytes"]["total"]["mlp@1"]


@pytest.mark.parametrize("argv,code,says", [
    (["compare", "lgb@1"], 2, "at least two"),
    (["compare", "lgb", "mlp@1"], 2, "MODEL_ID@VERSION"),
    (["compare", "lgb@1", "lgb@7"], 1, "does not exist"),
    (["compare", "lgb@1", "lgb@staging"], 1, "no alias 'staging'"),
])
def test_compare_errors(repo, capsys, argv, code, says):
    got, _, err = run(capsys, *repo, *argv)
    assert got == code and says in err
