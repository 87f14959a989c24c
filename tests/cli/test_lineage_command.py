"""``cas-repo lineage`` on versions with no lineage edges at all, or none in the asked direction."""

from __future__ import annotations

from datetime import datetime

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main


@pytest.fixture
def repo(tmp_path) -> list[str]:
    """``lone@1`` with no parents and no children; ``base@1`` with one child, ``base@2``."""
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model({"w": 0}, ModelMetadata("lone", "csi300", "LGBM", {}, {"IC": 0.01}, datetime(2026, 1, 1)))
        store.save_model({"w": 1}, ModelMetadata("base", "csi300", "LGBM", {}, {"IC": 0.02}, datetime(2026, 1, 1)))
        store.save_model({"w": 2}, ModelMetadata("base", "csi300", "LGBM", {}, {"IC": 0.03}, datetime(2026, 1, 2),
                                                 parents=["base@1"]))
    return ["--repo", str(root), "--catalog", str(tmp_path / "index.duckdb")]


HINT = " (lineage comes from the parents given at save time and from rollbacks)\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_version_without_lineage_says_so(repo, capsys):
    assert run(capsys, *repo, "lineage", "lone@1") == (0, "lone@1 has no ancestors or descendants" + HINT, "")


@pytest.mark.parametrize(("argv", "says"), [
    (["base@1", "--ancestors"], "base@1 has no ancestors" + HINT),
    (["base@2", "--descendants"], "base@2 has no descendants" + HINT),
])
def test_an_empty_direction_says_which(repo, capsys, argv, says):
    assert run(capsys, *repo, "lineage", *argv) == (0, says, "")
