"""Errors name `cas-repo` commands on the command line and Python calls in Python."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main
from cas_repo.errors import (
    AliasNotFoundError,
    AliasTargetError,
    ModelDeletedError,
    ModelNotFoundError,
    ModelPurgedError,
)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for name in ("m", "gone"):
            store.save_model({"w": 1}, ModelMetadata(name, "exp", "LGBM", {}, {"IC": 0.1}, datetime(2026, 1, 2)))
        store.delete_model("gone")
    return root


def _cli_error(capsys, root, *argv: str) -> tuple[int, str]:
    code = main(["--repo", str(root), *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,error,cli_says,python_says", [
    (["show", "nope"], ModelNotFoundError, "`cas-repo ls` shows", "`list_models()` shows"),
    (["show", "gone"], ModelDeletedError, "`cas-repo undelete gone`", "`undelete_model('gone')`"),
    (["show", "m@prod"], AliasNotFoundError, "`cas-repo alias set m prod VERSION`",
     "`set_alias('m', 'prod', VERSION)`"),
    (["alias", "set", "m", "prod", "9"], AliasTargetError, "`cas-repo log m` show", "`history()` show"),
    (["alias", "set", "gone", "prod", "1"], AliasTargetError, "`cas-repo undelete gone` first",
     "`undelete_model('gone')` first"),
])
def test_the_cli_gives_command_advice_and_python_keeps_python_advice(repo, capsys, argv, error, cli_says,
                                                                     python_says):
    code, err = _cli_error(capsys, repo, *argv)
    assert code == 1 and cli_says in err
    assert "()" not in err and "_model" not in err  # no Python call in a CLI message
    with ModelStore(repo) as store, pytest.raises(error) as info:
        if argv[0] == "show":
            store.get_model_metadata(argv[1])
        else:
            store.set_alias(argv[2], argv[3], int(argv[4]))
    assert python_says in str(info.value) and "cas-repo" not in str(info.value)


def test_a_missing_bucket_names_the_cli_flag_that_creates_it(s3, capsys, monkeypatch, tmp_path):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    url = f"s3://b-{uuid.uuid4().hex[:12]}/x"
    code, err = _cli_error(capsys, url, "ls")
    assert code == 1 and "pass --create-bucket" in err and "allow_bucket_creation" not in err
    assert main(["--repo", url, "--catalog", str(tmp_path / "i.duckdb"), "--create-bucket", "ls"]) == 0
    capsys.readouterr()
    assert main(["--repo", url, "--catalog", str(tmp_path / "i.duckdb"), "ls"]) == 0  # it exists now


def test_messages_replaced_by_a_subclass_or_an_as_of_read_stay_consistent_on_the_cli(repo, capsys):
    code, err = _cli_error(capsys, repo, "show", "gone", "--as-of", "2030-01-01T00:00Z")
    assert code == 1 and "was deleted as of" in err and "`gone@VERSION` reads one" in err
    code, err = _cli_error(capsys, repo, "show", "m@prod", "--as-of", "2030-01-01T00:00Z")
    assert code == 1 and "had no alias 'prod' as of" in err
    purged = ModelPurgedError("m", 1, "2026-01-03")
    assert purged.for_cli() == str(purged) and "purged by gc" in str(purged)
