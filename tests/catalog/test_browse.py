"""The models page's reads: filters, metric sort and paging in SQL, and the same as of a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.catalog import browse

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def _md(i: int, **kw) -> ModelMetadata:
    return ModelMetadata(model_id=f"m{i:03d}", experiment_name="even" if i % 2 == 0 else "odd",
                         model_type="LGBM" if i % 3 else "MLP", hyperparameters={"i": i},
                         metrics={"IC": i / 1000} if i % 5 else {}, created_at=datetime(2026, 1, 1), **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """120 models saved a minute apart, every 7th tagged pick=yes; m000 deleted; m001 twice."""
    ticks = iter(T0 + timedelta(minutes=k) for k in range(1000))
    with ModelStore(tmp_path_factory.mktemp("browse") / "cas", clock=lambda: next(ticks)) as s:
        for i in range(120):
            s.save_model(i, _md(i, tags={"pick": "yes"} if i % 7 == 0 else {}))
        s.delete_model("m000")
        s.save_model(1001, _md(1))
        yield s


def _page(store, **kw) -> browse.ModelPage:
    with store.catalog.session() as s:
        return browse.model_page(s, **kw)


def test_pages_cover_every_live_model_once_in_order(store):
    seen = []
    for offset in range(0, 150, 50):
        page = _page(store, sort="model_id", descending=False, offset=offset, limit=50)
        assert page.total == 119
        seen += [r.model_id for r in page.rows]
    assert seen == [f"m{i:03d}" for i in range(1, 120)]
    assert _page(store, offset=500).rows == ()


def test_filters_combine_and_deleted_models_only_on_request(store):
    page = _page(store, experiment="even", model_type="MLP", tag_key="pick", tag_value="yes", limit=500)
    assert sorted(r.model_id for r in page.rows) == ["m042", "m084"]
    with_deleted = _page(store, experiment="even", model_type="MLP", tag_key="pick", include_deleted=True)
    assert sorted(r.model_id for r in with_deleted.rows) == ["m000", "m042", "m084"]


def test_metric_sort_puts_models_without_the_metric_last(store):
    rows = _page(store, metric="IC", descending=True, limit=500).rows
    assert [r.model_id for r in rows[:2]] == ["m119", "m118"]
    assert all("IC" not in r.metrics for r in rows[-23:]) and "IC" in rows[-24].metrics
    assert _page(store, metric="IC", descending=False).rows[0].model_id == "m001"


def test_hostile_sort_and_metric_names_stay_values(store):
    page = _page(store, sort="model_id; DROP TABLE versions", metric=None, limit=5)
    assert page.rows == _page(store, sort="saved_at", limit=5).rows  # an unknown sort is saved_at
    assert store.sql("SELECT count(DISTINCT model_id) FROM versions").column(0)[0].as_py() >= 119
    assert _page(store, metric="IC') OR 1=1 --", limit=1).total == 119


def test_as_of_pages_show_models_and_tags_of_that_time(store):
    page = _page(store, at=T0 + timedelta(minutes=9, seconds=30), sort="model_id", descending=False)
    assert [r.model_id for r in page.rows] == [f"m{i:03d}" for i in range(10)]
    assert page.rows[0].tags == {"pick": "yes"} and not page.rows[0].deleted
    tagged = _page(store, at=T0 + timedelta(minutes=9, seconds=30), tag_key="pick", tag_value="yes")
    assert sorted(r.model_id for r in tagged.rows) == ["m000", "m007"]
    m001 = [r for r in _page(store, sort="model_id", descending=False, limit=2).rows if r.model_id == "m001"]
    assert m001[0].version == 2


def test_version_facts_of_a_time_leave_out_later_versions(store):
    with store.catalog.session() as s:
        assert [v.version for v in browse.version_facts(s, "m001")] == [1, 2]
        assert [v.version for v in browse.version_facts(s, "m001", T0 + timedelta(minutes=5))] == [1]


def test_the_head_table_page_matches_the_log_replayed_to_now(store):
    """Now, pages come from the head table's copies; as of a time, from the event log
    joined to the versions table: at a time after every event, both must agree."""
    later = T0 + timedelta(days=1)
    for kw in ({"sort": "model_id", "descending": False, "limit": 500},
               {"metric": "IC", "include_deleted": True, "limit": 500},
               {"tag_key": "pick", "tag_value": "yes", "experiment": "odd"}):
        now, replayed = _page(store, **kw), _page(store, at=later, **kw)
        assert now == replayed, kw


def test_aliases_and_metric_values_now_and_as_of_a_time(tmp_path):
    ticks = iter(T0 + timedelta(minutes=k) for k in range(100))
    with ModelStore(tmp_path / "cas", clock=lambda: next(ticks)) as store:
        for i in (1, 2, 3):
            store.save_model(i, replace(_md(1), metrics={"IC": i / 10, "ICIR": i}))  # m001 v1..v3 at 0, 1, 2
        store.save_model(4, _md(2))                       # m002 v1 at 3
        store.set_alias("m001", "prod", 1)                # 4
        store.set_alias("m001", "canary", 3)              # 5
        store.set_alias("m002", "prod", 1)                # 6
        store.set_alias("m001", "prod", 2)                # 7
        store.remove_alias("m001", "canary")              # 8
        store.save_model(5, _md(5))                       # 9: m005 v1, no metrics
        store.log_metrics("m001@1", {"IC": 0.5})          # 10: supersedes v1's saved IC
        with store.catalog.session() as s:
            assert browse.aliases_of(s, ["m001", "m002", "m003"]) == {"m001": {"prod": 2}, "m002": {"prod": 1}}
            assert browse.aliases_of(s, ["m001"], T0 + timedelta(minutes=5)) == {"m001": {"canary": 3, "prod": 1}}
            assert browse.aliases_of(s, ["m001", "m002"], T0 + timedelta(minutes=3)) == {}
            assert browse.aliases_of(s, []) == {}
            # Each version's metric values as v_metrics holds them; a version without one is absent.
            assert browse.version_metrics(s, "m001") == {
                1: {"IC": 0.5, "ICIR": 1.0}, 2: {"IC": 0.2, "ICIR": 2.0}, 3: {"IC": 0.3, "ICIR": 3.0}}
            # As of a time, the values of then: before the logged IC, and before v3's save.
            assert browse.version_metrics(s, "m001", T0 + timedelta(minutes=1)) == {
                1: {"IC": 0.1, "ICIR": 1.0}, 2: {"IC": 0.2, "ICIR": 2.0}}
            assert browse.version_metrics(s, "m005") == {}


def test_models_page_shows_a_head_metric_logged_after_the_save_from_when_it_arrived(tmp_path):
    ticks = iter(T0 + timedelta(minutes=k) for k in range(100))
    with ModelStore(tmp_path / "cas", clock=lambda: next(ticks)) as store:
        store.save_model(1, _md(1))                                   # 0: IC 0.001
        store.save_model(2, _md(2))                                   # 1: IC 0.002
        store.log_metrics("m001", {"IC": 0.9, "live": 0.2})           # 2
        with store.catalog.session() as s:
            def metrics(**kw):
                return {m.model_id: m.metrics for m in browse.model_page(s, **kw).rows}

            now = {"m001": {"IC": 0.9, "live": 0.2}, "m002": {"IC": 0.002}}
            assert metrics() == now == metrics(at=T0 + timedelta(minutes=5))  # head table, and replayed
            assert metrics(at=T0 + timedelta(minutes=1)) == {"m001": {"IC": 0.001}, "m002": {"IC": 0.002}}
            assert [m.model_id for m in browse.model_page(s, metric="IC").rows] == ["m001", "m002"]
            assert [m.model_id for m in browse.model_page(s, metric="live").rows] == ["m001", "m002"]
            assert "live" in browse.facets(s).metrics
