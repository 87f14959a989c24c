"""Bulk import derives heads the way commits do; migrations fill their copies or refold the index.

Both work on a catalog file directly (no store, no log): the catalog's own contract.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pytest

from cas_repo.catalog import Catalog
from cas_repo.catalog.bulk import bulk_import
from cas_repo.catalog.migrations import available, migrate
from cas_repo.errors import CatalogError
from cas_repo.rows import to_metadata
from tools.bench.catalog_scale import generate


def test_bulk_import_matches_the_generated_rows(tmp_path):
    tables = generate(n_models=40, n_versions=400, big=30, seed=3)
    catalog = Catalog(tmp_path / "catalog.duckdb")
    with catalog.session() as s:
        counts = bulk_import(s, tables)
        assert counts["versions"] == 400
        versions = tables["versions"].to_pylist()
        heads = {}
        for v in versions:
            heads[v["model_id"]] = max(heads.get(v["model_id"], 0), v["version"])
        dead = {e["model_id"] for e in tables["events"].to_pylist() if e["kind"] == "delete"}
        # Every model's head as the head table's cached copy gives it.
        listed = {m: to_metadata(s.version_row(m, None)) for m in heads}
        assert {k: (m.version, m.deleted) for k, m in listed.items()} == \
            {k: (h, k in dead) for k, h in heads.items()}
        tags = {(t["model_id"], t["version"]): {t["key"]: t["value"]} for t in tables["tags"].to_pylist()}
        parents = {(e["model_id"], e["version"]): [f'{e["parent_model"]}@{e["parent_version"]}']
                   for e in tables["lineage"].to_pylist() if e["relation"] == "parent"}
        for k, m in listed.items():
            meta = json.loads(next(v["metadata_json"] for v in versions
                                   if (v["model_id"], v["version"]) == (k, m.version)))
            assert m.tags == tags.get((k, m.version), {})
            assert m.parents == parents.get((k, m.version), [])
            assert (m.hyperparameters, m.metrics) == (meta["hyperparameters"], meta["metrics"])
            assert m.created_at == datetime.fromisoformat(meta["created_at"])
        big = s.history("m000000")
        assert [h.version for h in big] == list(range(1, 31))
        assert [h.tags for h in big] == [tags.get(("m000000", v), {}) for v in range(1, 31)]


def test_bulk_import_is_all_or_nothing(tmp_path):
    tables = generate(n_models=5, n_versions=20, big=4, seed=1)
    catalog = Catalog(tmp_path / "catalog.duckdb")
    with catalog.session() as s:
        bulk_import(s, tables)
        with pytest.raises(CatalogError):
            bulk_import(s, {"tags": tables["tags"].slice(0, 0), "versions": tables["versions"].slice(0, 1)})
        with pytest.raises(CatalogError, match="columns"):
            bulk_import(s, {"tags": tables["versions"]})
        with pytest.raises(CatalogError, match="importable"):
            bulk_import(s, {"models": tables["versions"]})
        assert s.rows("SELECT count(*) FROM v_versions") == [(20,)]


def test_migration_0002_fills_copies_of_a_catalog_written_before_it(tmp_path):
    """A catalog with only 0001 and rows as its writers wrote them, then opened by this cas-repo."""
    path = tmp_path / "cas" / "catalog.duckdb"
    path.parent.mkdir()
    first = available()[0]
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE cas_migrations (number INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "checksum VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    con.execute(first.sql)
    con.execute("INSERT INTO cas_migrations (number, name, checksum) VALUES (?, ?, ?)",
                [first.number, first.name, first.checksum])
    at = datetime(2026, 1, 2, 3, 0)
    for version, tags, parents in ((1, {"stage": "dev"}, []), (2, {"stage": "prod", "a": "b"}, ["m@1"])):
        meta = {"created_at": "2026-01-02T03:04:05", "experiment_name": "exp", "hyperparameters": {"k": 1},
                "lineage": {}, "metrics": {"IC": 0.5}, "model_id": "m", "model_type": "LGBM",
                "parents": parents, "qlib_recorder_id": None, "tags": tags}
        con.execute("INSERT INTO versions VALUES (?, ?, ?, ?, 'save', NULL, 'exp', 'LGBM', ?, ?, NULL, 10, 10, "
                    "MAP(['IC'], [0.5]), ?, '{}', ?)",
                    ["m", version, "ab" * 32, "cd" * 32, at, at, json.dumps({"k": 1}), json.dumps(meta)])
        con.execute("INSERT INTO events VALUES ('m', ?, 'save', ?, ?, ?)", [version, version, at, "ef" * 32])
        for k, v in tags.items():
            con.execute("INSERT INTO tags VALUES ('m', ?, ?, ?)", [version, k, v])
        for p in parents:
            con.execute("INSERT INTO lineage VALUES ('m', ?, 'm', ?, 'parent')", [version, int(p[2:])])
    con.execute("INSERT INTO models VALUES ('m', 'exp', 'LGBM', 2, 2, false, ?)", [at])
    migrate(con, upto=4)
    (head,) = con.execute("SELECT head_version, head_tags, head_parents, head_metrics, head_created_at "
                          "FROM models").fetchall()
    assert head == (2, {"a": "b", "stage": "prod"}, ["m@1"], '{"IC":0.5}', "2026-01-02T03:04:05")
    rows = con.execute("SELECT version, tags, parents FROM v_versions ORDER BY version").fetchall()
    assert rows == [(1, {"stage": "dev"}, []), (2, {"a": "b", "stage": "prod"}, ["m@1"])]
    tag_events = con.execute("SELECT seq, key, value FROM v_tag_events ORDER BY ALL").fetchall()
    assert tag_events == [(1, "stage", "dev"), (2, "a", "b"), (2, "stage", "prod")]
    con.close()


def test_migration_0005_refolds_an_index_made_before_commits_named_authors(tmp_path, monkeypatch):
    """An index from before 0005 (no authors, stale rows) is emptied and folded again from the log."""
    from cas_repo import ModelMetadata, ModelStore

    monkeypatch.setenv("CAS_REPO_USER", "ada")
    md = ModelMetadata(model_id="m", experiment_name="e", model_type="LGBM", hyperparameters={},
                       metrics={"IC": 0.1}, created_at=datetime(2026, 1, 1))
    with ModelStore(tmp_path / "cas") as store:
        store.save_model({"w": 1}, md)
        store.set_alias("m", "prod", 1)
        store_id, path = store.ledger.log.store_id(), store.catalog.path
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    migrate(con, upto=4)
    # What an older cas-repo's index of this store held, plus a row only it had.
    con.execute("INSERT INTO log_index VALUES (1, ?, 2)", [store_id])
    con.execute("INSERT INTO models (model_id, experiment_name, model_type, head_version, last_seq, updated_at) "
                "VALUES ('ghost', 'e', 'LGBM', 1, 1, now())")
    con.close()
    with ModelStore(tmp_path / "cas") as store:
        assert [r["model_id"] for r in store.sql("SELECT model_id FROM v_models").to_pylist()] == ["m"]
        assert store.sql("SELECT kind, author FROM v_events").to_pylist() == [{"kind": "save", "author": "ada"}]
        assert store.sql("SELECT alias, author FROM v_alias_history").to_pylist() == \
            [{"alias": "prod", "author": "ada"}]
