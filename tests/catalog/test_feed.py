"""The catalog index folded from the log: in bulk or one commit at a time, the same rows."""

from __future__ import annotations

import pytest

from cas_repo import ModelStore
from cas_repo.catalog import bulk_fold

TABLES = ("models", "versions", "lineage", "tags", "events", "event_tags", "objects", "manifest_chunks", "packs",
          "alias_moves", "commits", "metric_log", "log_index")


def _rows(store: ModelStore) -> dict[str, list]:
    with store.catalog.session() as s:
        return {t: sorted(s.con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def _history(store: ModelStore, make_md) -> None:
    for i in range(40):
        store.stats()  # the index catches up now: a few commits at a time, one call each
        store.save_model({"i": i % 7, "w": list(range(i))}, make_md(f"m{i % 5}", tags={"k": str(i)},
                                                                     parents=[f"m{i % 5}@1"] if i >= 5 else [],
                                                                     IC=i / 100))
        if i % 9 == 4:
            store.delete_model(f"m{i % 5}")
        if i % 9 == 6:
            store.undelete_model(f"m{(i - 2) % 5}")
        if i % 11 == 3:
            store.set_tags(f"m{i % 5}", {"k": None, "stage": "prod"}, 1)
        if i >= 5 and f"m{i % 5}" not in deleted(store):
            # promotions and moves back, some in runs long enough to fold in bulk
            store.set_alias(f"m{i % 5}", "prod", 1 + i % (i // 5 + 1))
            store.set_alias(f"m{i % 5}", "shadow", 1 + (i + 1) % (i // 5 + 1))
        if i % 13 == 7:
            store.remove_alias(f"m{i % 5}", "shadow")
        if i % 6 == 2 and f"m{i % 5}" not in deleted(store):
            # a backtest arriving later, for the head and for version 1
            store.log_metrics(f"m{i % 5}", {"sharpe": i / 10, "IC": -i / 100})
            store.log_metrics(f"m{i % 5}@1", {"live_ic": i / 1000})
    store.rollback("m1", 2)


def deleted(store: ModelStore) -> set[str]:
    return {m.model_id for m in store.list_models(include_deleted=True) if m.deleted}


@pytest.mark.parametrize("bulk_min", [1, 10**9], ids=["all-bulk", "one-by-one"])
def test_bulk_and_one_by_one_folds_give_the_same_index(tmp_path, make_md, monkeypatch, bulk_min):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        _history(store, make_md)
        incremental = _rows(store)  # folded a few commits at a time as the history grew
    monkeypatch.setattr(bulk_fold, "BULK_MIN", bulk_min)
    monkeypatch.setattr("cas_repo.catalog.feed.BULK_MIN", bulk_min)
    with ModelStore(root, catalog=tmp_path / "fresh.duckdb") as fresh:
        rebuilt = _rows(fresh)
        assert [h.version for h in fresh.history("m1")] == list(range(1, 10))
        assert fresh.aliases("m1") == {"prod": 5, "shadow": 6}
    assert len(rebuilt["alias_moves"]) > 30 and len(rebuilt["metric_log"]) > 15
    for t in TABLES:
        assert rebuilt[t] == incremental[t], t


def test_an_index_of_another_store_is_rebuilt_not_mixed_in(tmp_path, make_md, caplog):
    shared = tmp_path / "index.duckdb"
    with ModelStore(tmp_path / "a", catalog=shared) as a:
        a.save_model(1, make_md("only-in-a"))
        assert [h.model_id for h in a.history("only-in-a")] == ["only-in-a"]
    with ModelStore(tmp_path / "b", catalog=shared) as b:
        b.save_model(2, make_md("only-in-b"))
        rows = b.sql("SELECT model_id FROM v_models").column(0).to_pylist()
    assert rows == ["only-in-b"]
    assert "indexed another store" in caplog.text
