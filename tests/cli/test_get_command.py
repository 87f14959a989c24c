"""``cas-repo get``: a verified version as a standard pickle file that other tools read."""

from __future__ import annotations

import json
import pickle
import pickletools
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main
from cas_repo.errors import OutputExistsError
from cas_repo.qlib_support import synthetic
from cas_repo.serialization import write_pickle_file


def _globals_named(data: bytes) -> set[str]:
    """The modules a pickle stream imports classes or functions from (what unpickling needs installed)."""
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(strings[-2])
        elif op.name in ("GLOBAL", "INST"):
            found.add(arg.split(" ")[0])
    return found


@pytest.fixture(scope="module")
def lgb_store(tmp_path_factory):
    """m@1: a LightGBM LGBModel, m@2: it trained 5 rounds more (its booster has an init predictor)."""
    root = tmp_path_factory.mktemp("get") / "cas"
    dataset = synthetic.make_dataset(n_instruments=20, n_days=80, n_features=5, seed=3)
    base = synthetic.train_lgbm(dataset, num_boost_round=15)
    child = synthetic.continue_training(base, dataset, extra_rounds=5)
    with ModelStore(root) as store:
        for model in (base, child):
            store.save_model(model, ModelMetadata("m", "exp", "LGBM", {}, {"IC": 0.1}, datetime(2026, 1, 2)))
        store.set_alias("m", "prod", 1)
    return root, dataset


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_get_writes_a_pickle_that_needs_no_cas_repo_and_predicts_the_same(lgb_store, tmp_path, capsys):
    root, dataset = lgb_store
    for name, argv_ref in (("latest.pkl", "m"), ("prod.pkl", "m@prod")):
        code, out, _ = _run(capsys, "--repo", str(root), "--json", "get", argv_ref, "-o", str(tmp_path / name))
        report = json.loads(out)
        assert code == 0 and report["bytes"] == (tmp_path / name).stat().st_size
        assert report["class"] == "qlib.contrib.model.gbdt.LGBModel"
    assert [json.loads(_run(capsys, "--repo", str(root), "--json", "show", r)[1])["version"]
            for r in ("m", "m@prod")] == [2, 1]
    with ModelStore(root) as store:
        for name, version in (("latest.pkl", 2), ("prod.pkl", 1)):
            data = (tmp_path / name).read_bytes()
            # What tools without cas-repo need to read it: Qlib, LightGBM, numpy, the stdlib.
            named = _globals_named(data)
            assert "qlib.contrib.model.gbdt" in named and not any(m.startswith("cas_repo") for m in named), named
            expected = synthetic.predict(store.load_model("m", version)[0], dataset)
            assert np.array_equal(synthetic.predict(pickle.loads(data), dataset), expected)


def test_get_refuses_to_replace_a_file_unless_forced(lgb_store, tmp_path, capsys):
    root, _ = lgb_store
    target = tmp_path / "model.pkl"
    target.write_bytes(b"keep me")
    code, out, err = _run(capsys, "--repo", str(root), "get", "m@1", "-o", str(target))
    assert (code, out) == (1, "") and "pass --force" in err and target.read_bytes() == b"keep me"
    code, out, _ = _run(capsys, "--repo", str(root), "get", "m@1", "-o", str(target), "--force")
    assert code == 0 and out.startswith("wrote m@1 (LGBModel, ")
    with target.open("rb") as f:
        assert type(pickle.load(f)).__name__ == "LGBModel"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pkl"]  # no temp file left behind
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_pickle_file({"w": 1}, target)


def test_a_failed_write_leaves_no_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise TypeError("not today")

    with pytest.raises(Exception, match="not today"):
        write_pickle_file([1, Unpicklable()], tmp_path / "model.pkl")
    with pytest.raises(Exception, match="cannot write"):
        write_pickle_file([1], tmp_path / "no-such-folder" / "model.pkl")
    assert list(tmp_path.iterdir()) == []


def test_get_to_stdout_writes_the_pickle_and_nothing_else(lgb_store, tmp_path):
    """In a fresh process: Qlib prints notes while the model's classes import, and those
    must not land in the pickle stream."""
    root, _ = lgb_store
    done = subprocess.run([sys.executable, "-m", "cas_repo.cli", "--repo", str(root), "get", "m@prod", "-o", "-"],
                          capture_output=True, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert type(pickle.loads(done.stdout)).__name__ == "LGBModel"
