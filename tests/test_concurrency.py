"""Several processes saving into one store at once: every save lands as a distinct version."""

from __future__ import annotations

from datetime import datetime

import pytest

from cas_repo import ModelMetadata, ModelStore

from .spawned import run_together

pytestmark = pytest.mark.xdist_group("processes")


def _saver(root: str, worker: int, n: int, start, results) -> None:
    versions = []
    with ModelStore(root) as store:
        start.wait()
        for i in range(n):
            md = ModelMetadata("shared", "exp", "LGBM", {"worker": worker}, {"i": float(i)}, datetime.now())
            store.save_model({"worker": worker, "i": i, "pad": bytes([worker]) * 5000}, md)
            versions.append(md.version)
    results.put((worker, versions))


def test_four_processes_times_ten_saves_give_forty_versions(tmp_path):
    root = str(tmp_path / "cas")
    ModelStore(root).close()
    results = dict(run_together(_saver, [(root, w, 10) for w in range(4)], timeout=120, what="a saving process"))
    acknowledged = sorted(v for vs in results.values() for v in vs)
    assert acknowledged == list(range(1, 41))
    with ModelStore(root) as store:
        history = store.history("shared")
        assert [h.version for h in history] == list(range(1, 41))
        seen = set()
        for h in history:
            model, md = store.load_model("shared", h.version)
            assert model["worker"] == md.hyperparameters["worker"]
            assert model["i"] == md.metrics["i"]
            seen.add((model["worker"], model["i"]))
        assert seen == {(w, i) for w in range(4) for i in range(10)}
