"""Versions kept in model order: the index answers exactly as it did in log order."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_repo import ModelMetadata, ModelStore
from cas_repo.catalog import browse, catalog, cluster, history

T0 = datetime(2026, 4, 1, tzinfo=UTC)
MODELS = ("a", "b", "c")


def _md(model_id: str, i: int, tags: dict[str, str] | None = None) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name="e", model_type="LGBM", hyperparameters={"i": i},
                         metrics={"IC": i / 100, "loss": 1 - i / 100}, created_at=datetime(2026, 1, 1),
                         tags=tags or {})


def _answers(store: ModelStore) -> dict:
    with store.catalog.session() as s:
        return {m: (s.history(m), browse.version_facts(s, m), browse.version_metrics(s, m),
                    history.events(s, m)) for m in MODELS}


def _physical_order(store: ModelStore) -> list[tuple[str, int]]:
    with store.catalog.session() as s:
        return [tuple(r) for r in s.rows("SELECT model_id, version FROM versions")]


def _zone_scans_from(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    for module in (catalog, browse, history):
        monkeypatch.setattr(module, "ZONE_SCAN_VERSIONS", n)


steps = st.lists(st.tuples(st.sampled_from(MODELS), st.sampled_from(["save", "save", "tag", "metrics",
                                                                     "rollback", "delete"])),
                 min_size=1, max_size=24)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_history_and_pages_read_the_same_from_rows_in_model_order(monkeypatch, steps):
    ticks = iter(T0 + timedelta(seconds=k) for k in range(10_000))
    with tempfile.TemporaryDirectory() as d, ModelStore(Path(d) / "cas", clock=lambda: next(ticks)) as store:
        saved = dict.fromkeys(MODELS, 0)
        for i, (m, what) in enumerate(steps):
            if what == "save" or saved[m] == 0:
                store.save_model(i, _md(m, i, {"n": str(i)} if i % 3 == 0 else None))
                saved[m] += 1
            elif what == "tag":
                store.set_tags(m, {"stage": f"s{i}"})
            elif what == "metrics":
                store.log_metrics(m, {"IC": i / 10, "extra": float(i)}, version=1)
            elif what == "rollback":
                store.rollback(m, 1)
                saved[m] += 1
            elif what == "delete":
                store.delete_model(m)
        monkeypatch.setattr(cluster, "CLUSTER_TAIL", 10**9)  # the catch-up leaves log order alone
        in_log_order = _answers(store)
        with store.catalog.session() as s:
            cluster.cluster_versions(s)
            assert cluster.unclustered_rows(s) == 0
        assert _physical_order(store) == sorted(_physical_order(store))
        assert _answers(store) == in_log_order
        _zone_scans_from(monkeypatch, 1)  # every read by min/max
        assert _answers(store) == in_log_order


def test_a_catch_up_puts_a_long_tail_in_model_order(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CLUSTER_TAIL", 8)
    with ModelStore(tmp_path / "cas") as store:
        for i in range(5):
            for m in ("b", "a"):
                store.save_model(i, _md(m, i))
        assert len(store.history("a")) == 5  # a session: the catch-up rewrote the table
        with store.catalog.session() as s:
            assert cluster.unclustered_rows(s) == 0
        assert _physical_order(store) == sorted(_physical_order(store))
        store.save_model(9, _md("a", 9))
        with store.catalog.session() as s:
            assert cluster.unclustered_rows(s) == 1  # below the threshold: appended in log order
            assert not cluster.keep_clustered(s)
            assert cluster.keep_clustered(s, tail=1)
        assert [md.saved_version() for md in store.history("a")] == [1, 2, 3, 4, 5, 6]
