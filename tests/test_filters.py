"""The search filter language: parsing, errors, and SQL that never holds a user's text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_repo.catalog.search import compile_filter, compile_order
from cas_repo.errors import CasRepoError, InvalidFilterError, QueryError
from cas_repo.filters import Clause, Filter, Key, OrderKey, parse_filter, parse_order_by


def test_the_mlflow_example_parses_into_clauses():
    f = parse_filter("metrics.IC > 0.03 and params.num_leaves = 63 AND tags.stage = 'prod' and "
                     "experiment_name = 'csi300' and model_type = 'LGBM' and model_id LIKE 'alpha%' and version >= 2")
    assert f.clauses == (
        Clause(Key("metric", "IC"), ">", 0.03), Clause(Key("param", "num_leaves"), "=", 63.0),
        Clause(Key("tag", "stage"), "=", "prod"), Clause(Key("attribute", "experiment_name"), "=", "csi300"),
        Clause(Key("attribute", "model_type"), "=", "LGBM"), Clause(Key("attribute", "model_id"), "LIKE", "alpha%"),
        Clause(Key("attribute", "version"), ">=", 2.0))


@pytest.mark.parametrize("text,clause", [
    ("metrics.`Rank IC` <= -0.5", Clause(Key("metric", "Rank IC"), "<=", -0.5)),
    ('metrics."Rank IC" != 1e-3', Clause(Key("metric", "Rank IC"), "!=", 0.001)),
    ("metric.`a``b` <> 2", Clause(Key("metric", "a`b"), "!=", 2.0)),
    ("tags.note = 'it''s'", Clause(Key("tag", "note"), "=", "it's")),
    ('tags.stage ILIKE "PRO%"', Clause(Key("tag", "stage"), "ILIKE", "PRO%")),
    ("params.objective in ('huber', 'l2')", Clause(Key("param", "objective"), "IN", ("huber", "l2"))),
    ("version NOT IN (1, 3)", Clause(Key("attribute", "version"), "NOT IN", (1.0, 3.0))),
    ("attributes.name = 'alpha'", Clause(Key("attribute", "model_id"), "=", "alpha")),
    ("created_at >= '2026-03-01T00:00Z'",
     Clause(Key("attribute", "created_at"), ">=", datetime(2026, 3, 1, tzinfo=UTC))),
    ("alias = 'prod'", Clause(Key("attribute", "alias"), "=", "prod")),
])
def test_clause_forms(text, clause):
    assert parse_filter(text).clauses == (clause,)


@pytest.mark.parametrize("text,position,says", [
    ("metrics.IC >", 13, "ends where a value should come"),
    ("metrics.IC >> 3", 13, "expected a number"),
    ("metrics.IC > 'high'", 1, "compares with numbers"),
    ("tags.stage = 3", 1, "quote the value"),
    ("bogus = 1", 1, "unknown key 'bogus'"),
    ("metrics.IC > 1 or version = 2", 16, "OR is not supported"),
    ("metrics.IC > 1 version = 2", 16, "expected AND"),
    ("metrics.`IC > 1", 9, "never closed"),
    ("model_id < 'b'", 1, "LIKE"),
    ("params.lr LIKE 3", 1, "quoted pattern"),
    ("created_at > 'yesterday'", 1, "compares with a time"),
    ("version IN (1, 'x')", 1, "compares with numbers"),
    ("metrics.IC ; DROP TABLE versions", 12, "unexpected character"),
])
def test_a_bad_filter_names_its_position_and_the_grammar(text, position, says):
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(text)
    message = str(info.value)
    assert f"at position {position}:" in message and says in message
    assert "CLAUSE [AND CLAUSE]" in message  # the grammar
    assert isinstance(info.value, QueryError) and isinstance(info.value, ValueError)


def test_order_by_keys():
    assert parse_order_by(["metrics.`Rank IC` DESC", "created_at", "params.lr asc"]) == (
        OrderKey(Key("metric", "Rank IC"), True), OrderKey(Key("attribute", "created_at"), False),
        OrderKey(Key("param", "lr"), False))
    assert parse_order_by("version DESC") == (OrderKey(Key("attribute", "version"), True),)
    for bad in ("metrics.IC DOWN", "nope", "alias"):
        with pytest.raises(InvalidFilterError):
            parse_order_by([bad])


# -- properties ------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=12)
texts = st.text(max_size=12)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=32).map(float)


@st.composite
def clauses(draw) -> Clause:
    entity = draw(st.sampled_from(["metric", "param", "tag", "attribute"]))
    if entity == "attribute":
        name = draw(st.sampled_from(["model_id", "experiment_name", "model_type", "kind", "digest", "alias",
                                     "version"]))
    else:
        name = draw(names)
    key = Key(entity, name)
    numeric = key.kind == "number" or (key.kind == "any" and draw(st.booleans()))
    ops = ["=", "!=", "IN", "NOT IN"] + (["<", "<=", ">", ">="] if numeric else ["LIKE", "ILIKE"])
    op = draw(st.sampled_from(ops))
    value_of = numbers if numeric else texts
    value = tuple(draw(st.lists(value_of, min_size=1, max_size=3))) if "IN" in op else draw(value_of)
    return Clause(key, op, value)


filters = st.lists(clauses(), max_size=4).map(lambda cs: Filter(tuple(cs)))
# Drawing text is slow on a busy machine; the properties need no more than these examples.
quick = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(filters)
def test_a_filter_reads_back_as_itself(f):
    assert parse_filter(str(f)) == f


@quick
@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_with_a_filter_error(text):
    try:
        parse_filter(text)
    except InvalidFilterError:
        pass


def _blanked(f: Filter) -> Filter:
    """The same shape with every name and value replaced."""
    def blank(v):
        return tuple(blank(x) for x in v) if isinstance(v, tuple) else (0.0 if isinstance(v, float) else "v")

    return Filter(tuple(Clause(Key(c.key.entity, c.key.name if c.key.entity == "attribute" else "n"), c.op,
                               blank(c.value)) for c in f.clauses))


@quick
@given(filters, st.lists(st.tuples(st.sampled_from(["metric", "param", "tag"]), names, st.booleans()), max_size=3))
def test_the_sql_depends_on_the_filters_shape_only_and_binds_every_name_and_value(f, order):
    sql, params = compile_filter(f)
    assert sql == compile_filter(_blanked(f))[0]
    for c in f.clauses:
        if c.key.entity != "attribute":
            assert c.key.name in params
        for v in (c.value if isinstance(c.value, tuple) else (c.value,)):
            assert v in params or any(isinstance(p, list) and v in p for p in params)
    keys = [OrderKey(Key(e, n), d) for e, n, d in order]
    order_sql, order_params = compile_order(keys)
    assert order_sql == compile_order([OrderKey(Key(k.key.entity, "n"), k.descending) for k in keys])[0]
    assert all(k.key.name in order_params for k in keys)
    assert sql.count("?") == len(params) and order_sql.count("?") == len(order_params)


def test_errors_are_cas_repo_errors():
    assert issubclass(InvalidFilterError, CasRepoError)
