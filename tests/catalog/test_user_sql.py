"""store.sql(): read-only by construction, parameters bound, results as Arrow."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from cas_repo import CasRepoError, ModelMetadata, ModelStore
from cas_repo.errors import QueryError, ReadOnlyQueryError

WRITES = [
    "DROP TABLE versions",
    "DELETE FROM versions",
    "UPDATE models SET deleted = true",
    "INSERT INTO tags VALUES ('m1', 1, 'k', 'v')",
    "CREATE TABLE x (a INT)",
    "CREATE TEMP TABLE x AS SELECT 1",
    "CREATE VIEW v_evil AS SELECT 1",
    "ALTER TABLE versions ADD COLUMN x INT",
    "COPY versions TO '/tmp/cas_repo_leak.csv'",
    "COPY versions FROM '/etc/hosts'",
    "EXPORT DATABASE '/tmp/cas_repo_leak'",
    "ATTACH '/tmp/cas_repo_other.duckdb' AS other",
    "DETACH catalog",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "RESET threads",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "CHECKPOINT",
    "VACUUM",
    "BEGIN TRANSACTION",
    "USE memory",
    # several statements, hidden behind comments, strings and whitespace
    "SELECT 1; DROP TABLE versions",
    "PIVOT v_metrics ON metric USING first(value); DROP TABLE versions",
    "SELECT 1;DELETE FROM versions;",
    "/* harmless */ SELECT 1 -- ; DROP TABLE versions\n; DROP TABLE versions",
    "SELECT ';' AS x; DELETE FROM models",
    "  \n\tDELETE FROM models -- SELECT",
    "WITH d AS (SELECT 1) DELETE FROM models",
    "EXPLAIN ANALYZE DELETE FROM models",
]


def _md(model_id: str, ic: float, **kw) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name=kw.pop("experiment", "exp"), model_type="LGBM",
                         hyperparameters={"num_leaves": 31}, metrics={"IC": ic},
                         created_at=datetime(2026, 1, 2, 3, 4, 5), **kw)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """One store for the module: every test here leaves it as it found it."""
    with ModelStore(tmp_path_factory.mktemp("sql") / "cas") as store:
        store.save_model([1, 2, 3], _md("m1", 0.05, tags={"stage": "prod"}))
        store.save_model([1, 2, 3, 4], _md("m1", 0.07, parents=["m1@1"]))
        store.save_model("x", _md("m2", 0.01, experiment="other"))
        yield store


def _fingerprint(store: ModelStore) -> tuple:
    return (store.sql("SELECT count(*) FROM v_versions").column(0).to_pylist(),
            [(m.model_id, m.version, m.tags, m.deleted) for m in store.list_models(include_deleted=True)])


@pytest.mark.parametrize("query", WRITES)
def test_anything_that_writes_or_changes_the_session_is_refused(filled, query):
    before = _fingerprint(filled)
    with pytest.raises(ReadOnlyQueryError) as info:
        filled.sql(query)
    assert isinstance(info.value, CasRepoError)
    assert "refused" in str(info.value)
    assert _fingerprint(filled) == before


@pytest.mark.parametrize("query", [
    "PIVOT v_metrics ON metric USING first(value) GROUP BY model_id, version ORDER BY model_id, version",
    "-- metrics as columns\nSELECT * FROM (PIVOT v_metrics ON metric USING first(value) GROUP BY model_id, version)"
    " ORDER BY model_id, version",
    "WITH p AS (PIVOT v_metrics ON metric USING first(value) GROUP BY model_id, version) "
    "FROM p ORDER BY model_id, version",
])
def test_a_pivot_runs_read_only(filled, query):
    """DuckDB plans a PIVOT without an IN list as several statements; it is still one query."""
    before = _fingerprint(filled)
    for _ in range(2):  # the ENUM it builds is temporary and rolled back: a second run works too
        assert filled.sql(query).to_pylist() == [{"model_id": "m1", "version": 1, "IC": 0.05},
                                                 {"model_id": "m1", "version": 2, "IC": 0.07},
                                                 {"model_id": "m2", "version": 1, "IC": 0.01}]
    assert _fingerprint(filled) == before


def test_file_access_and_extensions_are_refused_even_inside_a_select(filled, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    for query in (f"SELECT * FROM read_csv('{secret}')", f"FROM '{secret}'",
                  f"SELECT * FROM glob('{tmp_path}/*')", "SELECT * FROM read_text('/etc/hostname')"):
        with pytest.raises(ReadOnlyQueryError):
            filled.sql(query)
    with pytest.raises(QueryError):  # query() accepts only a SELECT, like us
        filled.sql("SELECT * FROM query('DELETE FROM models')")
    assert len(filled.list_models()) == 2


def test_parameters_are_bound_never_spliced(filled):
    evil = "m1' OR '1'='1"
    assert filled.sql("SELECT * FROM v_versions WHERE model_id = ?", [evil]).num_rows == 0
    for attack in ("m1'; DROP TABLE versions; --", "x'); DELETE FROM models; --"):
        assert filled.sql("SELECT count(*) AS n FROM v_models WHERE model_id = $id", {"id": attack}) \
            .column("n").to_pylist() == [0]
    assert filled.sql("SELECT model_id FROM v_models WHERE model_id = ?", ["m1"]).column(0).to_pylist() == ["m1"]
    assert filled.sql("SELECT count(*) FROM v_versions").column(0).to_pylist() == [3]
    with pytest.raises(QueryError):
        filled.sql("SELECT ?", "not a list")


def test_results_are_arrow_tables_with_queryable_types(filled):
    table = filled.sql(
        "SELECT model_id, version, metrics['IC'] AS ic, (hyperparameters->>'num_leaves')::INT AS leaves, "
        "tags['stage'] AS stage, parent FROM v_versions ORDER BY model_id, version")
    assert isinstance(table, pa.Table)
    assert table.schema.field("ic").type == pa.float64()
    assert table.to_pylist() == [
        {"model_id": "m1", "version": 1, "ic": 0.05, "leaves": 31, "stage": "prod", "parent": None},
        {"model_id": "m1", "version": 2, "ic": 0.07, "leaves": 31, "stage": None, "parent": "m1@1"},
        {"model_id": "m2", "version": 1, "ic": 0.01, "leaves": 31, "stage": None, "parent": None},
    ]
    frame = table.to_pandas()
    assert list(frame["model_id"]) == ["m1", "m1", "m2"]


def test_malformed_queries_say_what_is_wrong(filled):
    with pytest.raises(QueryError, match="not valid SQL"):
        filled.sql("SELEC 1")
    with pytest.raises(QueryError, match="empty"):
        filled.sql("  -- nothing\n")
    with pytest.raises(QueryError, match="nope"):
        filled.sql("SELECT nope FROM v_versions")


def test_queries_between_saves_see_every_save_and_stay_read_only(store_dir, make_md):
    with ModelStore(store_dir) as store:
        store.save_model([1], make_md("m1"))
        assert store.sql("SELECT count(*) FROM v_versions").column(0).to_pylist() == [1]
        # A caught-up index is queried on one read-only connection: still read-only.
        with pytest.raises(ReadOnlyQueryError):
            store.sql("DELETE FROM versions")
        store.save_model([2], make_md("m1"))
        assert store.sql("SELECT max(version) FROM v_versions").column(0).to_pylist() == [2]


@pytest.mark.parametrize("shared_index", [True, False])
def test_a_query_sees_what_another_store_committed_since_the_last_one(store_dir, make_md, tmp_path, shared_index):
    index = None if shared_index else tmp_path / "other" / "catalog.duckdb"
    with ModelStore(store_dir) as store, ModelStore(store_dir, catalog=index) as other:
        store.save_model([1], make_md("m1"))
        assert store.sql("SELECT count(*) FROM v_versions").column(0).to_pylist() == [1]
        other.save_model([2], make_md("m2"))
        if shared_index:  # the other store brings the shared index up to date itself
            assert other.sql("SELECT count(*) FROM v_versions").column(0).to_pylist() == [2]
        assert store.sql("SELECT list(model_id ORDER BY model_id) FROM v_versions").column(0).to_pylist() \
            == [["m1", "m2"]]


def test_export_writes_every_view_as_parquet_from_one_snapshot(filled, tmp_path):
    import pyarrow.parquet as pq

    from cas_repo.catalog.query import VIEWS

    report = filled.export(tmp_path / "snap")
    assert set(report.rows) == set(VIEWS)
    for view in VIEWS:
        table = pq.read_table(tmp_path / "snap" / f"{view}.parquet")
        assert table.num_rows == report.rows[view]
        assert table.schema.names == filled.sql(f"SELECT * FROM {view} LIMIT 0").schema.names
    versions = pq.read_table(tmp_path / "snap" / "v_versions.parquet")
    assert versions.num_rows == 3
    assert pa.types.is_map(versions.schema.field("metrics").type)
    assert (tmp_path / "snap" / "export.json").exists()
    assert not list((tmp_path / "snap").glob(".*tmp"))


@pytest.mark.asyncio
async def test_async_facade_runs_queries_in_a_worker_thread(filled):
    from cas_repo import CasModelRepository

    repo = CasModelRepository(filled)  # not closed: the module's store stays open
    table = await repo.sql("SELECT count(*) AS n FROM v_versions WHERE model_id = ?", ["m1"])
    assert table.column("n").to_pylist() == [2]
    assert [e.kind for e in await repo.events("m1")] == ["save", "save"]
    assert [n.ref for n in (await repo.lineage("m1", 2)).ancestors] == ["m1@1"]
    assert (await repo.diff(("m1", 1), ("m1", 2))).metrics == {"IC": (0.05, 0.07)}
