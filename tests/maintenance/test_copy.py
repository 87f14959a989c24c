"""copy: versions of one store appended to another; only the chunks the target lacks travel, the
metadata comes along, the lineage says where from, and a copy run again does nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cas_repo import AliasNotFoundError, ModelNotFoundError, ModelStore
from cas_repo.cli import main
from cas_repo.maintenance.copying import copy_versions

from ..s3_server import fresh_url
from .mirroring import md

BIG = 400_000  # floats: 3.2 MB in 256 KiB buffer chunks


def _source(root, rng, key=None) -> dict[int, dict]:
    weights = rng.standard_normal(BIG)
    nudged = weights.copy()
    nudged[:1000] += 1.0  # a near-identical successor: one buffer chunk differs
    models = {1: {"w": weights, "n": 1}, 2: {"w": nudged, "n": 2}}
    with ModelStore(root, key=key) as s:
        for v in (1, 2):
            s.save_model(models[v], md("alpha", IC=0.01 * v))
        s.log_metrics("alpha@1", {"backtest_sharpe": 1.4})
        s.set_tags("alpha", {"stage": "prod"}, version=1)
        s.set_alias("alpha", "prod", 1)
    return models


def test_only_the_chunks_the_target_lacks_travel_and_the_copy_is_the_same_model(tmp_path, rng):
    src, dst = tmp_path / "src", tmp_path / "dst"
    models = _source(src, rng)
    with ModelStore(src) as s, ModelStore(dst) as d:
        first = copy_versions(s, d, ["alpha@prod"])
        assert [(v.source, v.target) for v in first.versions] == [("alpha@1", "alpha@1")]
        assert first.bytes_sent > 8 * BIG and first.bytes_skipped == 0
        second = copy_versions(s, d, ["alpha"])  # the successor: only what changed
        (v2,) = second.versions
        assert v2.target == "alpha@2" and v2.bytes_sent < 300_000 < 8 * BIG <= v2.bytes_skipped + v2.bytes_sent
        twin = copy_versions(s, d, ["alpha@1"], as_id="alpha-twin")  # content already there: nothing
        assert twin.bytes_sent == 0 and twin.versions[0].target == "alpha-twin@1"

        for ref, version in (("alpha@1", 1), ("alpha@2", 2), ("alpha-twin@1", 1)):
            obj, meta = d.load_model(ref)
            assert np.array_equal(obj["w"], models[version]["w"]) and obj["n"] == version
            original = s.get_model_metadata(f"alpha@{version}")
            assert (meta.metrics, meta.tags, meta.hyperparameters, meta.experiment_name, meta.model_type,
                    meta.created_at, meta.digest) == (
                original.metrics, original.tags, original.hyperparameters, original.experiment_name,
                original.model_type, original.created_at, original.digest)
            assert meta.lineage["copied_from"] == {"store": s.url, "store_id": s.ledger.log.store_id(),
                                                   "ref": f"alpha@{version}", "manifest": original.digest}
        assert d.get_model_metadata("alpha@1").metrics == {"IC": 0.01, "backtest_sharpe": 1.4}
        assert d.get_model_metadata("alpha@1").tags == {"stage": "prod"}


def test_a_copy_run_again_does_nothing_and_says_so(tmp_path, rng, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _source(src, rng)
    argv = ["--json", "copy", str(src), "alpha@1", "alpha@2", "--to", str(dst)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["copied"] == 2
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["copied"] == 0 and again["bytes_sent"] == 0
    assert [v["skipped"] for v in again["versions"]] == [True, True]
    with ModelStore(dst) as d:
        assert d.get_model_metadata("alpha").version == 2
    assert main(["copy", str(src), "alpha@1", "--to", str(dst)]) == 0  # not the newest: a new version
    assert "copied 1 of 1 version" in capsys.readouterr().out
    assert main(["--repo", str(dst), "lineage", "alpha@3"]) == 0
    assert "alpha@3 was copied from alpha@1 of" in capsys.readouterr().out


def test_a_reference_that_names_no_version_is_a_clear_error(tmp_path, rng, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _source(src, rng)
    with ModelStore(src) as s, ModelStore(dst) as d:
        with pytest.raises(ModelNotFoundError, match="version 9 of model 'alpha' does not exist"):
            copy_versions(s, d, ["alpha@9"])
        with pytest.raises(AliasNotFoundError, match="has no alias 'staging'"):
            copy_versions(s, d, ["alpha@staging"])
        assert d.list_models() == []
    assert main(["copy", str(src), "beta", "--to", str(dst)]) == 1
    err = capsys.readouterr().err
    assert "model 'beta' does not exist" in err and f"`cas-repo --repo {src} ls` shows what the source holds" in err
    assert main(["copy", str(src), "alpha@", "--to", str(dst)]) == 2


def test_copies_from_a_keyed_store_to_an_unkeyed_one_on_seaweedfs(tmp_path, rng, seaweed):
    src, dst = tmp_path / "src", fresh_url()
    models = _source(src, rng, key="copy-test-secret")
    with ModelStore(src, key="copy-test-secret") as s, \
            ModelStore(dst, backend_options=seaweed.options(), catalog=tmp_path / "d.duckdb") as d:
        report = copy_versions(s, d, ["alpha@1", "alpha@2"], as_id="beta")
        assert report.copied == 2 and report.versions[1].bytes_sent < 300_000
        assert np.array_equal(d.load_model("beta@2")[0]["w"], models[2]["w"])
