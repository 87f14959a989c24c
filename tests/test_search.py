"""search_versions, search_models, leaderboard and compare on a real store of small Qlib models."""

from __future__ import annotations

import asyncio
import operator
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_repo import ModelMetadata, ModelStore
from cas_repo.errors import InvalidFilterError, InvalidMetadataError, ModelNotFoundError
from cas_repo.facade import CasModelRepository
from cas_repo.filters import Clause, Filter, Key

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# One worker builds the module's store once.
pytestmark = pytest.mark.xdist_group("search")
ODD = "it's \"odd\" `x` ; DROP TABLE versions; --"  # a metric name and tag value that must stay data


def _md(model_id, metrics, hp, *, experiment="csi300", model_type="LGBM", tags=None, day=1):
    return ModelMetadata(model_id, experiment, model_type, hp, metrics, datetime(2026, 3, day), tags=tags or {})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """alpha: v1, v2, v3 = rollback to v1, prod -> v2; beta: v1 (a string param), deleted;
    gamma: v1 (odd names, a lower-is-better metric); delta: v1 with no metrics."""
    from cas_repo.qlib_support import synthetic as syn

    dataset = syn.make_dataset(syn.make_frame(n_instruments=8, n_days=40, n_features=3))
    small, larger = syn.train_lgbm(dataset, num_boost_round=2), syn.train_lgbm(dataset, num_boost_round=4)
    root = tmp_path_factory.mktemp("search")
    ticks = iter(T0 + h * timedelta(hours=1) for h in range(1, 100))
    with ModelStore(root / "cas", catalog=root / "index.duckdb", clock=lambda: next(ticks)) as s:
        s.save_model(small, _md("alpha", {"IC": 0.031, "Rank IC": 0.041}, {"num_leaves": 31, "lr": 0.05},
                                tags={"stage": "dev"}))
        s.save_model(larger, _md("alpha", {"IC": 0.052, "Rank IC": 0.062}, {"num_leaves": 63, "lr": 0.05},
                                 tags={"stage": "prod"}, day=2))
        s.rollback("alpha", 1)
        s.set_alias("alpha", "prod", 2)
        s.save_model(larger, _md("beta", {"IC": 0.02, "Rank IC": 0.05}, {"num_leaves": "63", "lr": 0.1},
                                 experiment="csi500", model_type="MLP", day=3))
        s.delete_model("beta")
        s.save_model(small, _md("gamma", {"IC": -0.01, "mse": 0.4, ODD: 1.5},
                                {"num_leaves": 15, "objective": "huber", "early": True},
                                tags={"stage": "prod", "owner": ODD}, day=4))
        s.save_model(small, _md("delta", {}, {"num_leaves": 7}, day=5))
    with ModelStore(root / "cas", catalog=root / "index.duckdb") as s:
        yield s


@pytest.fixture(scope="module")
def every_version(store):
    """Every version of every model, as history() gives them, with the aliases pointing at it."""
    out = []
    for model_id in ("alpha", "beta", "gamma", "delta"):
        aliases = store.aliases(model_id)
        out += [(md, {a for a, v in aliases.items() if v == md.version}) for md in store.history(model_id)]
    return out


def refs(mds):
    return [f"{m.model_id}@{m.version}" for m in mds]


def test_search_versions_answers_the_mlflow_example(store):
    found = store.search_versions("metrics.IC > 0.03 and params.num_leaves = 63 and tags.stage = 'prod' and "
                                  "experiment_name = 'csi300' and model_type = 'LGBM' and model_id LIKE 'al%' "
                                  "and version >= 2")
    assert refs(found) == ["alpha@2"]
    assert found[0].metrics == {"IC": 0.052, "Rank IC": 0.062} and found[0].hyperparameters["num_leaves"] == 63


def test_filters_on_names_with_spaces_aliases_times_and_hostile_text(store):
    assert refs(store.search_versions("metrics.`Rank IC` >= 0.041", ["version"])) == ["alpha@1", "alpha@2", "alpha@3"]
    assert refs(store.search_versions("alias = 'prod'")) == ["alpha@2"]
    assert refs(store.search_versions("created_at >= '2026-03-04'", ["created_at"])) == ["gamma@1", "delta@1"]
    quoted = ODD.replace("`", "``")
    assert refs(store.search_versions(f"metrics.`{quoted}` = 1.5")) == ["gamma@1"]
    assert refs(store.search_versions("tags.owner = '" + ODD.replace("'", "''") + "'")) == ["gamma@1"]
    assert store.search_versions("tags.owner = 'x''; DROP TABLE versions; --'") == []
    # A param matches as a number whether it was stored as one or as text, and as text too.
    assert refs(store.search_versions("params.num_leaves = 63", ["model_id"], include_deleted=True)) == [
        "alpha@2", "beta@1"]
    assert refs(store.search_versions("params.lr = '0.05'", ["version"])) == ["alpha@1", "alpha@2", "alpha@3"]
    assert refs(store.search_versions("params.early = 'true'")) == ["gamma@1"]
    assert refs(store.search_versions("params.objective IN ('huber', 'l2') and kind = 'save'")) == ["gamma@1"]
    assert len(store.search_versions()) == 5  # beta is deleted
    assert len(store.search_versions(include_deleted=True)) == 6


def test_order_by_puts_versions_lacking_the_key_last_and_limit_cuts(store):
    assert refs(store.search_versions(order_by=["metrics.IC DESC", "version"])) == [
        "alpha@2", "alpha@1", "alpha@3", "gamma@1", "delta@1"]
    assert refs(store.search_versions(order_by="metrics.IC")) == [
        "gamma@1", "alpha@1", "alpha@3", "alpha@2", "delta@1"]
    assert refs(store.search_versions(order_by=["params.num_leaves DESC"], limit=2)) == ["alpha@2", "alpha@1"]
    assert refs(store.search_versions(limit=2)) == ["delta@1", "gamma@1"]  # newest save first
    with pytest.raises(InvalidFilterError, match="positive whole number"):
        store.search_versions(limit=0)


def test_search_models_reads_each_models_newest_version(store):
    assert refs(store.search_models(order_by=["metrics.IC DESC"])) == ["alpha@3", "gamma@1", "delta@1"]
    assert refs(store.search_models("metrics.IC > 0.04")) == []  # alpha@2 is not alpha's newest
    assert refs(store.search_models("model_type = 'MLP'", include_deleted=True)) == ["beta@1"]


def test_leaderboard_ranks_each_models_best_version(store):
    board = store.leaderboard("IC")
    assert [(s.rank, s.ref, s.value) for s in board.standings] == [(1, "alpha@2", 0.052), (2, "gamma@1", -0.01)]
    assert board.standings[0].aliases == ("prod",) and board.standings[0].metrics["Rank IC"] == 0.062
    lower = store.leaderboard("IC", higher_is_better=False, include_deleted=True)
    assert [s.ref for s in lower.standings] == ["gamma@1", "beta@1", "alpha@3"]  # alpha@1 = @3: the newest wins
    assert [s.ref for s in store.leaderboard("IC", where="params.num_leaves < 60").standings] == ["alpha@3", "gamma@1"]
    assert [s.ref for s in store.leaderboard("IC", experiment="csi500", include_deleted=True).standings] == ["beta@1"]
    assert store.leaderboard("no such metric").standings == ()
    with pytest.raises(InvalidFilterError):
        store.leaderboard("")


def test_compare_puts_versions_side_by_side_across_models(store):
    c = store.compare(["alpha@1", "alpha@prod", ("gamma", 1), "alpha@3"], lower_is_better=["mse"])
    assert c.refs == ("alpha@1", "alpha@2", "gamma@1", "alpha@3")
    assert c.aliases == ((), ("prod",), (), ())
    rows = {m.name: m for m in c.metrics}
    assert rows["IC"].values == (0.031, 0.052, -0.01, 0.031) and rows["IC"].best == (1,)
    assert rows["mse"].values == (None, None, 0.4, None) and rows["mse"].best == (2,)
    assert not rows["mse"].higher_is_better
    params = {p.name: p for p in c.hyperparameters}
    assert set(params) == {"num_leaves", "objective", "early", "lr"}  # lr: gamma has none
    assert params["num_leaves"].values == (31, 63, 15, 31)
    assert params["objective"].present == (False, False, True, False)
    # Bytes shared: alpha@1, gamma@1 and alpha@3 are the same model bytes; alpha@2 is another model.
    m = c.shared.matrix
    assert m[0][0] == m[0][2] == m[0][3] == m[2][2] > 0
    assert m[0][1] == m[1][0] < m[1][1]
    assert c.shared.with_others[0] == m[0][0]
    assert all(m[i][j] == m[j][i] for i in range(4) for j in range(4))
    diff = store.diff("alpha@1", "alpha@2").content
    assert m[0][1] == diff.shared_bytes


def test_compare_refuses_what_is_not_two_versions(store):
    with pytest.raises(InvalidMetadataError, match="at least two"):
        store.compare(["alpha@1"])
    with pytest.raises(InvalidMetadataError, match="version reference"):
        store.compare(["alpha", "gamma@1"])
    with pytest.raises(ModelNotFoundError):
        store.compare(["alpha@1", "alpha@9"])


def test_the_async_facade_offers_the_same_reads(store):
    async def go():
        repo = CasModelRepository(store)
        found = await repo.search_versions("alias = 'prod'")
        board = await repo.leaderboard("IC")
        c = await repo.compare(["alpha@1", "alpha@2"])
        return refs(found), board.standings[0].ref, c.refs

    assert asyncio.run(go()) == (["alpha@2"], "alpha@2", ("alpha@1", "alpha@2"))


# -- the property: a search equals a brute-force filter over history() -----------------------

_CMP = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge}


def _like(value: str, pattern: str, fold: bool) -> bool:
    rx = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, value, re.S | (re.I if fold else 0)) is not None


def _test(actual, c: Clause) -> bool:
    if actual is None:
        return False
    if c.op == "IN":
        return actual in c.value
    if c.op == "NOT IN":
        return actual not in c.value
    if c.op in ("LIKE", "ILIKE"):
        return _like(actual, c.value, c.op == "ILIKE")
    return _CMP[c.op](actual, c.value)


def _param(v, numeric: bool):
    if numeric:
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return float(v)
        try:
            return float(v)
        except (TypeError, ValueError):
            return None
    return {True: "true", False: "false"}.get(v, v) if isinstance(v, bool) else str(v)


def _holds(md: ModelMetadata, aliases: set[str], c: Clause) -> bool:
    k = c.key
    if k.entity == "metric":
        return _test(md.metrics.get(k.name), c)
    if k.entity == "tag":
        return _test(md.tags.get(k.name), c)
    if k.entity == "param":
        return k.name in md.hyperparameters and _test(_param(md.hyperparameters[k.name], c.numeric), c)
    if k.name == "alias":
        return any(_test(a, c) for a in aliases)
    value = {"model_id": md.model_id, "experiment_name": md.experiment_name, "model_type": md.model_type,
             "version": float(md.version or 0), "kind": "rollback" if md.rollback_of else "save"}[k.name]
    return _test(value, c)


KEYS = [Key("metric", "IC"), Key("metric", "Rank IC"), Key("metric", "mse"), Key("metric", ODD),
        Key("param", "num_leaves"), Key("param", "objective"), Key("param", "lr"), Key("tag", "stage"),
        Key("tag", "owner"), Key("attribute", "model_id"), Key("attribute", "experiment_name"),
        Key("attribute", "model_type"), Key("attribute", "version"), Key("attribute", "kind"),
        Key("attribute", "alias")]
NUMBERS = st.sampled_from([-0.01, 0.0, 0.02, 0.031, 0.041, 0.052, 0.4, 1.5, 2.0, 3.0, 15.0, 31.0, 63.0, 0.05])
TEXTS = st.sampled_from(["prod", "dev", "PROD", "pr%", "%a", "_eta", "alpha", "beta", "gamma", "csi300", "csi500",
                         "LGBM", "MLP", "save", "rollback", "huber", "63", "0.05", "%", ODD, ""])


@st.composite
def search_clauses(draw) -> Clause:
    key = draw(st.sampled_from(KEYS))
    numeric = key.kind == "number" or (key.kind == "any" and draw(st.booleans()))
    ops = ["=", "!=", "IN", "NOT IN"] + (["<", "<=", ">", ">="] if numeric else ["LIKE", "ILIKE"])
    op = draw(st.sampled_from(ops))
    values = NUMBERS if numeric else TEXTS
    value = tuple(draw(st.lists(values, min_size=1, max_size=3))) if "IN" in op else draw(values)
    return Clause(key, op, value)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(search_clauses(), max_size=3), st.booleans())
def test_search_equals_a_brute_force_filter_over_history(store, every_version, clauses, deleted):
    f = Filter(tuple(clauses))
    expected = {f"{md.model_id}@{md.version}" for md, aliases in every_version
                if (deleted or not md.deleted) and all(_holds(md, aliases, c) for c in clauses)}
    assert set(refs(store.search_versions(str(f), include_deleted=deleted))) == expected


ORDER_KEYS = ["metrics.IC", "metrics.`Rank IC`", "metrics.mse", "version", "model_id", "experiment_name"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(ORDER_KEYS), st.booleans()), min_size=1, max_size=3,
                unique_by=lambda t: t[0]))
def test_order_by_equals_a_python_sort_with_missing_values_last(store, every_version, keys):
    def value(md: ModelMetadata, key: str):
        if key.startswith("metrics."):
            return md.metrics.get(key.removeprefix("metrics.").strip("`"))
        return getattr(md, key)

    rows = sorted((md for md, _ in every_version if not md.deleted), key=lambda m: (m.model_id, m.version))
    for key, desc in reversed(keys):
        present = sorted((m for m in rows if value(m, key) is not None), key=lambda m: value(m, key), reverse=desc)
        rows = present + [m for m in rows if value(m, key) is None]
    order = [f"{k} {'DESC' if d else 'ASC'}" for k, d in keys]
    assert refs(store.search_versions(order_by=order)) == refs(rows)


def test_the_brute_forces_like_reads_patterns_as_sql_does():
    assert _like("alpha", "al%", False) and _like("beta", "_eta", False) and not _like("Alpha", "al%", False)
    assert _like("Alpha", "al%", True) and not _like("a.b", "a_c", False) and _like("a.c", "a.c", False)
