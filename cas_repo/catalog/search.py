"""Searching and ranking versions: a parsed filter compiled to SQL, leaderboards, shared bytes.

The SQL text is built only from the filter's shape: columns, views and operators are
picked from the fixed tables below, and every metric, param and tag name and every value
is a bound parameter. Metric values come from ``v_metrics`` (each version's current
metrics), hyperparameters from ``v_hyperparameters``, tags from ``v_tags``, aliases from
``v_aliases``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..filters import Clause, Filter, Key, OrderKey
from ..log.state import VersionRow
from .catalog import VERSION_COLS, Session, versions_from_rows
from .convert import aware_utc, naive_utc
from .ranking import Leaderboard, SharedBytes, Standing

_COLUMNS = {"model_id": "v.model_id", "experiment_name": "v.experiment_name", "model_type": "v.model_type",
            "kind": "v.kind", "digest": "v.manifest", "version": "v.version", "created_at": "v.created_at",
            "saved_at": "v.saved_at"}
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "LIKE": "LIKE", "ILIKE": "ILIKE"}
_SAME_VERSION = "x.model_id = v.model_id AND x.version = v.version"
_PARAM_NUMBER = "coalesce(x.value_double, TRY_CAST(x.value_text AS DOUBLE))"


def _test(expr: str, c: Clause) -> tuple[str, list[Any]]:
    """``expr op value`` (or IN a list) with the value bound."""
    if isinstance(c.value, tuple):
        cast = "DOUBLE[]" if c.numeric else "VARCHAR[]"
        lhs = f"{expr}::DOUBLE" if c.numeric else expr
        sql = f"list_contains(?::{cast}, {lhs})"
        return (sql if c.op == "IN" else f"NOT {sql}"), [list(c.value)]
    value = naive_utc(c.value) if isinstance(c.value, datetime) else c.value
    return f"{expr} {_SQL_OPS[c.op]} ?", [value]


def compile_clause(c: Clause) -> tuple[str, list[Any]]:
    """One clause as a SQL condition on version ``v`` and its parameters."""
    k = c.key
    if k.entity == "attribute" and k.name == "alias":
        test, params = _test("x.alias", c)
        return f"EXISTS (SELECT 1 FROM v_aliases x WHERE {_SAME_VERSION} AND {test})", params
    if k.entity == "attribute":
        return _test(_COLUMNS[k.name], c)
    if k.entity == "metric":
        test, params = _test("x.value", c)
        return f"EXISTS (SELECT 1 FROM v_metrics x WHERE {_SAME_VERSION} AND x.metric = ? AND {test})", \
            [k.name, *params]
    if k.entity == "tag":
        test, params = _test("x.value", c)
        return f"EXISTS (SELECT 1 FROM v_tags x WHERE {_SAME_VERSION} AND x.key = ? AND {test})", [k.name, *params]
    test, params = _test(_PARAM_NUMBER if c.numeric else "x.value_text", c)
    return f"EXISTS (SELECT 1 FROM v_hyperparameters x WHERE {_SAME_VERSION} AND x.name = ? AND {test})", \
        [k.name, *params]


def compile_filter(f: Filter) -> tuple[str, list[Any]]:
    """The filter as one SQL condition (``TRUE`` when empty) and its parameters, in order."""
    parts, params = [], []
    for c in f.clauses:
        sql, p = compile_clause(c)
        parts.append(f"({sql})")
        params.extend(p)
    return (" AND ".join(parts) or "TRUE"), params


def _order_expr(k: Key) -> tuple[list[str], list[Any]]:
    if k.entity == "attribute":
        return [_COLUMNS[k.name]], []
    if k.entity == "metric":
        return [f"(SELECT max(x.value) FROM v_metrics x WHERE {_SAME_VERSION} AND x.metric = ?)"], [k.name]
    if k.entity == "tag":
        return [f"(SELECT max(x.value) FROM v_tags x WHERE {_SAME_VERSION} AND x.key = ?)"], [k.name]
    # A param sorts by its number where it is one, then by its text.
    return ([f"(SELECT max({_PARAM_NUMBER}) FROM v_hyperparameters x WHERE {_SAME_VERSION} AND x.name = ?)",
             f"(SELECT max(x.value_text) FROM v_hyperparameters x WHERE {_SAME_VERSION} AND x.name = ?)"],
            [k.name, k.name])


def compile_order(keys: Sequence[OrderKey]) -> tuple[str, list[Any]]:
    """ORDER BY terms (missing values last; newest save first when no key is given), then
    model_id and version so that equal keys come out in one order."""
    terms: list[str] = []
    params: list[Any] = []
    for o in keys:
        exprs, p = _order_expr(o.key)
        terms.extend(f"{e} {'DESC' if o.descending else 'ASC'} NULLS LAST" for e in exprs)
        params.extend(p)
    if not keys:
        terms.append("v.saved_at DESC")
    terms.extend(["v.model_id", "v.version"])
    return ", ".join(terms), params


def search_versions(s: Session, f: Filter, order: Sequence[OrderKey], limit: int | None,
                    include_deleted: bool, heads_only: bool = False) -> list[VersionRow]:
    """The versions (or only each model's head) matching ``f``, in ``order``, with their current metrics."""
    where, where_params = compile_filter(f)
    order_sql, order_params = compile_order(order)
    head = "AND v.version = m.head_version " if heads_only else ""
    # Only our own text (above) is spliced; every name and value is in the parameters.
    sql = (f"SELECT {VERSION_COLS} FROM versions v JOIN models m USING (model_id) "
           f"WHERE (? OR NOT m.deleted) {head}AND {where} ORDER BY {order_sql}")
    params: list[Any] = [include_deleted, *where_params, *order_params]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = versions_from_rows(s.rows(sql, params))
    current = metrics_of(s, [(r.model_id, r.version) for r in rows])
    return [dataclasses.replace(r, metadata={**r.metadata, "metrics": current.get((r.model_id, r.version), {})})
            for r in rows]


def metrics_of(s: Session, refs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, float]]:
    """The current metrics (``v_metrics``) of each version in ``refs``, by name."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    refs = list(dict.fromkeys(refs))
    if not refs:
        return out
    for model_id, version, metric, value in s.rows(
            "SELECT x.model_id, x.version, x.metric, x.value FROM v_metrics x "
            "JOIN (SELECT unnest(?::VARCHAR[]) AS model_id, unnest(?::INTEGER[]) AS version) n "
            "ON x.model_id = n.model_id AND x.version = n.version ORDER BY x.metric",
            [[m for m, _ in refs], [v for _, v in refs]]):
        out.setdefault((model_id, version), {})[metric] = float(value)
    return out


def aliases_of(s: Session, refs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, ...]]:
    """The aliases pointing at each version in ``refs`` (sorted by name)."""
    out: dict[tuple[str, int], tuple[str, ...]] = {}
    refs = list(dict.fromkeys(refs))
    if not refs:
        return out
    for model_id, version, alias in s.rows(
            "SELECT a.model_id, a.version, a.alias FROM v_aliases a "
            "JOIN (SELECT unnest(?::VARCHAR[]) AS model_id, unnest(?::INTEGER[]) AS version) n "
            "ON a.model_id = n.model_id AND a.version = n.version ORDER BY a.alias",
            [[m for m, _ in refs], [v for _, v in refs]]):
        out[(model_id, version)] = (*out.get((model_id, version), ()), alias)
    return out


def metric_names(s: Session) -> list[str]:
    """Every metric name any version has (for the leaderboard's choice)."""
    return [r[0] for r in s.rows("SELECT DISTINCT metric FROM v_metrics ORDER BY metric")]


def leaderboard(s: Session, metric: str, *, experiment: str | None, higher_is_better: bool, f: Filter,
                limit: int | None, include_deleted: bool) -> Leaderboard:
    """Each model's best version by ``metric`` among those matching ``f``, best model first.

    A model's versions with equal values rank the newest first.
    """
    where, where_params = compile_filter(f)
    direction = "DESC" if higher_is_better else "ASC"
    # `where` and `direction` are our own text; names and values are parameters.
    sql = (
        "WITH c AS (SELECT v.model_id, v.version, v.experiment_name, v.model_type, v.saved_at, x.value "
        "FROM versions v JOIN models m USING (model_id) "
        "JOIN v_metrics x ON x.model_id = v.model_id AND x.version = v.version AND x.metric = ? "
        f"WHERE (? OR NOT m.deleted) AND (?::VARCHAR IS NULL OR v.experiment_name = ?) AND {where}), "
        "best AS (SELECT *, row_number() OVER (PARTITION BY model_id "
        f"ORDER BY value {direction}, version DESC) AS r FROM c) "
        "SELECT model_id, version, experiment_name, model_type, saved_at, value FROM best WHERE r = 1 "
        f"ORDER BY value {direction}, model_id")
    params: list[Any] = [metric, include_deleted, experiment, experiment, *where_params]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = s.rows(sql, params)
    refs = [(r[0], r[1]) for r in rows]
    metrics, aliases = metrics_of(s, refs), aliases_of(s, refs)
    standings = tuple(
        Standing(i + 1, m, v, float(value), exp, typ, aware_utc(at), metrics.get((m, v), {}), aliases.get((m, v), ()))
        for i, (m, v, exp, typ, at, value) in enumerate(rows))
    return Leaderboard(metric, higher_is_better, experiment, standings)


def shared_bytes(s: Session, manifests: Sequence[str]) -> SharedBytes:
    """Distinct chunk bytes shared by each pair of the versions whose manifests are ``manifests``."""
    n = len(manifests)
    matrix = [[0] * n for _ in range(n)]
    others = [0] * n
    if not n:
        return SharedBytes((), ())
    base = ("WITH r AS (SELECT unnest(range(?)) AS i, unnest(?::VARCHAR[]) AS manifest), "
            "c AS (SELECT DISTINCT r.i, mc.chunk, mc.size FROM r JOIN manifest_chunks mc ON mc.manifest = r.manifest) ")
    for i, j, size in s.rows(base + "SELECT a.i, b.i, sum(a.size) FROM c a JOIN c b ON a.chunk = b.chunk "
                             "GROUP BY a.i, b.i", [n, list(manifests)]):
        matrix[i][j] = int(size)
    for i, size in s.rows(base + "SELECT i, coalesce(sum(size) FILTER (WHERE k > 1), 0) FROM "
                          "(SELECT i, size, count(*) OVER (PARTITION BY chunk) AS k FROM c) GROUP BY i",
                          [n, list(manifests)]):
        others[i] = int(size)
    return SharedBytes(tuple(tuple(r) for r in matrix), tuple(others))
