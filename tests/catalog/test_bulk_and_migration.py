"""Bulk import derives heads the way commits do; migration 0002 fills its copies."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import duckdb
import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.catalog.bulk import bulk_import
from cas_repo.catalog.migrations import available
from cas_repo.errors import CatalogError
from tools.bench.catalog_scale import generate


def _md(model_id: str, **kw) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name="exp", model_type="LGBM",
                         hyperparameters={"num_leaves": 31, "nested": {"a": [1, 2]}}, metrics={"IC": 1, "ICIR": 0.5},
                         created_at=datetime(2026, 1, 2, 3, 4, 5), **kw)


def test_bulk_import_matches_the_generated_rows(tmp_path):
    tables = generate(n_models=40, n_versions=400, big=30, seed=3)
    with ModelStore(tmp_path / "cas", exclusive=True) as store:
        with store.catalog.session() as s:
            counts = bulk_import(s, tables)
        assert counts["versions"] == 400
        versions = tables["versions"].to_pylist()
        heads = {}
        for v in versions:
            heads[v["model_id"]] = max(heads.get(v["model_id"], 0), v["version"])
        dead = {e["model_id"] for e in tables["events"].to_pylist() if e["kind"] == "delete"}
        listed = {m.model_id: m for m in store.list_models(include_deleted=True)}
        assert {k: (m.version, m.deleted) for k, m in listed.items()} == \
            {k: (h, k in dead) for k, h in heads.items()}
        tags = {(t["model_id"], t["version"]): {t["key"]: t["value"]} for t in tables["tags"].to_pylist()}
        parents = {(e["model_id"], e["version"]): [f'{e["parent_model"]}@{e["parent_version"]}']
                   for e in tables["lineage"].to_pylist() if e["relation"] == "parent"}
        for k, m in listed.items():
            meta = json.loads(next(v["metadata_json"] for v in versions if (v["model_id"], v["version"]) == (k, m.version)))
            assert m.tags == tags.get((k, m.version), {})
            assert m.parents == parents.get((k, m.version), [])
            assert (m.hyperparameters, m.metrics) == (meta["hyperparameters"], meta["metrics"])
            assert m.created_at == datetime.fromisoformat(meta["created_at"])
        big = store.history("m000000")
        assert [h.version for h in big] == list(range(1, 31))
        assert [h.tags for h in big] == [tags.get(("m000000", v), {}) for v in range(1, 31)]
        # The store keeps working on top of imported rows.
        live = next(k for k in listed if k not in dead)
        store.save_model([1], _md(live))
        assert store.get_model_metadata(live).version == heads[live] + 1


def test_bulk_import_is_all_or_nothing(tmp_path):
    tables = generate(n_models=5, n_versions=20, big=4, seed=1)
    with ModelStore(tmp_path / "cas", exclusive=True) as store:
        with store.catalog.session() as s:
            bulk_import(s, tables)
            with pytest.raises(CatalogError):
                bulk_import(s, {"tags": tables["tags"].slice(0, 0), "versions": tables["versions"].slice(0, 1)})
            with pytest.raises(CatalogError, match="columns"):
                bulk_import(s, {"tags": tables["versions"]})
            with pytest.raises(CatalogError, match="importable"):
                bulk_import(s, {"models": tables["versions"]})
        assert store.sql("SELECT count(*) FROM v_versions").column(0).to_pylist() == [20]


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
    con.close()
    with ModelStore(tmp_path / "cas") as store:
        md = store.get_model_metadata("m")
        assert (md.version, md.tags, md.parents, md.metrics) == (2, {"a": "b", "stage": "prod"}, ["m@1"], {"IC": 0.5})
        assert md.created_at == datetime(2026, 1, 2, 3, 4, 5)
        assert [h.tags for h in store.history("m")] == [{"stage": "dev"}, {"a": "b", "stage": "prod"}]
        rows = store.sql("SELECT version, parents, tags FROM v_versions ORDER BY version").to_pylist()
        assert [r["parents"] for r in rows] == [[], ["m@1"]]
        tag_events = store.sql("SELECT seq, key, value FROM v_tag_events ORDER BY ALL").to_pylist()
        assert tag_events == [{"seq": 1, "key": "stage", "value": "dev"},
                              {"seq": 2, "key": "a", "value": "b"}, {"seq": 2, "key": "stage", "value": "prod"}]
        t = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
        assert store.as_of(t).get_model_metadata("m").tags == {"a": "b", "stage": "prod"}
