"""A store written by the first release (format 1: packs + a DuckDB catalog as the authority)
opens, upgrades itself to the log once, and answers exactly what the first release did."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.log.log import Log
from cas_repo.objects import LocalBackend

FIXTURE = Path(__file__).parent / "fixtures" / "format1"


@pytest.fixture
def old_store(tmp_path) -> Path:
    root = tmp_path / "cas"
    shutil.copytree(FIXTURE / "objects", root / "objects")
    (root / "catalog.duckdb").write_bytes(gzip.decompress((FIXTURE / "catalog.duckdb.gz").read_bytes()))
    for p in (root / "objects").rglob("*"):
        if p.is_file():
            p.chmod(0o444)
    return root


def _as_recorded(store: ModelStore, model_id: str) -> list[dict]:
    return [{"version": m.version, "digest": m.digest, "metrics": m.metrics, "tags": m.tags, "parents": m.parents,
             "rollback_of": m.rollback_of, "deleted": m.deleted} for m in store.history(model_id)]


def test_a_format_1_store_upgrades_and_keeps_its_whole_history(old_store):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    with ModelStore(old_store) as store:
        for mid in ("alpha", "beta", "gamma"):
            assert _as_recorded(store, mid) == expected[mid], mid
        events = [[e.model_id, e.seq, e.kind, e.version] for mid in ("alpha", "beta", "gamma")
                  for e in store.events(mid)]
        assert events == expected["_events"]
        assert [(m.model_id, m.version) for m in store.list_models()] == [("gamma", 1), ("alpha", 4)]
        weights = store.load_model("alpha")[0]["weights"]
        assert weights.shape == (300, 300) and weights.dtype == np.float32
        assert store.load_model("alpha", 2)[0]["weights"][0, 0] == weights[0, 0] + 1
        # It goes on as a store of the new format: the next save is version 5, one commit more.
        store.save_model({"weights": weights}, store.get_model_metadata("alpha"))
        assert store.get_model_metadata("alpha").version == 5
    log = Log(LocalBackend(old_store / "objects"))
    assert [p for p, _, _ in log.after(0, "")] == [1, 2]


def _open_and_list(root: str) -> list[tuple[str, int]]:
    with ModelStore(root) as store:
        return [(m.model_id, m.version) for m in store.list_models(include_deleted=True)]


def test_processes_opening_a_format_1_store_at_once_upgrade_it_exactly_once(old_store):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        seen = pool.map(_open_and_list, [str(old_store)] * 4)
    assert all(s == seen[0] for s in seen) and len(seen[0]) == 3
    log = Log(LocalBackend(old_store / "objects"))
    assert [p for p, _, _ in log.after(0, "")] == [1]  # one upgrade commit, whoever won
