"""What each page of the web view shows, read from a store (blocking; the app runs these in threads).

Every function returns the template's context as a plain dict of values; none of them
changes the store. ``at`` (an aware datetime or None) reads the store as it stood then.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..catalog import browse, history, tables
from ..catalog.values import AliasChange
from ..errors import InvalidMetadataError, ModelNotFoundError
from ..maintenance import audit
from ..maintenance.html_report import growth_chart, human, model_chart
from ..metadata import format_ref, parse_ref, validate_model_id, validate_version
from ..repository import ModelStore
from ..text import who
from . import charts

PAGE_SIZE = 50
# A model's page lists this many versions (newest first page) and timeline events (the
# newest), with links to older pages and to the whole list; the charts draw every version.
TABLE_VERSIONS = 100
TIMELINE_EVENTS = 100
# Words in a metric's name that make its smallest value the best one (errors and losses);
# every other metric (IC, ICIR, returns, Qlib's negative max_drawdown) is best at its largest.
_LOWER_IS_BETTER = frozenset({"loss", "logloss", "error", "mse", "mae", "rmse", "mape"})


@dataclass(frozen=True, slots=True)
class AliasSpan:
    """A stretch of time an alias pointed at one version: from ``since`` until ``until``
    (None: it points there still), set by ``by`` (``person@host``), moved on to ``then`` (None: removed)."""

    alias: str
    version: int
    since: datetime
    by: str
    until: datetime | None = None
    then: int | None = None


def alias_spans(moves: Iterable[AliasChange]) -> list[AliasSpan]:
    """Where each alias pointed and when, from its moves in log order (oldest span first)."""
    spans: list[AliasSpan] = []
    open_: dict[str, int] = {}  # alias -> index of its span still open
    for m in moves:
        i = open_.pop(m.alias, None)
        if i is not None:
            s = spans[i]
            spans[i] = AliasSpan(s.alias, s.version, s.since, s.by, m.moved_at, m.to_version)
        if m.to_version is not None:
            open_[m.alias] = len(spans)
            spans.append(AliasSpan(m.alias, m.to_version, m.moved_at, who(m.author, m.host)))
    return spans


def lower_is_better(metric: str) -> bool:
    """Whether the smallest value of ``metric`` is its best: its name says it is an error or a loss."""
    return any(w in _LOWER_IS_BETTER for w in re.split(r"[^a-z]+", metric.lower()))


def best_values(values: dict[int, dict[str, float]], names: list[str]) -> dict[str, float]:
    """Each metric's best value over the versions, for metrics that at least two versions hold."""
    best = {}
    for name in names:
        held = [m[name] for m in values.values() if name in m]
        if len(held) > 1:
            best[name] = min(held) if lower_is_better(name) else max(held)
    return best


@dataclass(frozen=True, slots=True)
class ModelQuery:
    """The models page's filters, sort and page, as given in its URL."""

    experiment: str | None = None
    model_type: str | None = None
    tag: str | None = None  # "key" or "key=value"
    deleted: bool = False
    sort: str = "saved_at"
    metric: str | None = None
    descending: bool = True
    page: int = 1

    @property
    def tag_filter(self) -> tuple[str | None, str | None]:
        if not self.tag:
            return None, None
        key, sep, value = self.tag.partition("=")
        return key, (value if sep else None)


def whole_number(text: str | None, name: str, default: int) -> int:
    """``text`` as an int (``default`` when empty).

    Raises:
        InvalidMetadataError: not a whole number.
    """
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise InvalidMetadataError(f"{name} is a whole number, got {text!r}") from exc


def models_page(store: ModelStore, q: ModelQuery, at: datetime | None) -> dict[str, Any]:
    key, value = q.tag_filter
    with store.catalog.session() as s:
        page = browse.model_page(
            s, at=at, experiment=q.experiment, model_type=q.model_type, tag_key=key, tag_value=value,
            include_deleted=q.deleted, sort=q.sort, metric=q.metric, descending=q.descending,
            offset=(max(q.page, 1) - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        facets = browse.facets(s)
        aliases = browse.aliases_of(s, [r.model_id for r in page.rows], at)
    shown = list(facets.metrics[:4])
    if q.metric and q.metric not in shown:
        shown.append(q.metric)
    return {"page": page, "facets": facets, "q": q, "metrics_shown": shown, "aliases": aliases,
            "pages": max(1, -(-page.total // PAGE_SIZE)), "sorts": list(browse.SORTS)}


def model_page(store: ModelStore, model_id: str, at: datetime | None, page: int = 1,
               show_all: bool = False) -> dict[str, Any]:
    """A model's page: ``page`` of its versions table (1: the newest), or every version and
    event with ``show_all``."""
    validate_model_id(model_id)
    # One catalog session for the page (each catches the index up with the log first).
    with store.catalog.session() as s:
        events = [e for e in history.events(s, model_id) if at is None or e.at <= at]
        versions = browse.version_facts(s, model_id, at)
        moves = [m for m in history.alias_history(s, model_id) if at is None or m.moved_at <= at]
        logged = browse.version_metrics(s, model_id, at)
    if not versions:
        raise ModelNotFoundError(model_id, None, hint=f"it did not exist as of {at.isoformat() if at else 'now'}")
    states = [e.kind for e in events if e.kind in ("delete", "undelete", "save", "rollback")]
    deleted = bool(states) and states[-1] == "delete"
    # Metric values as v_metrics holds them (a metric logged after the save included), or
    # as they stood at `at`.
    values = {v.version: logged.get(v.version, {}) for v in versions}
    names = sorted({k for m in values.values() for k in m})
    metric_charts = []
    for name in names:
        pts = [(version, m[name]) for version, m in values.items() if name in m]
        metric_charts.append(charts.line_chart(name, [p[0] for p in pts], [p[1] for p in pts]))
    bytes_chart = charts.bar_chart("bytes added to the store", [v.version for v in versions],
                                   [v.new_bytes for v in versions], human)
    # The table and the timeline list a page of the newest versions and events (thousands
    # of rows cost the server and the reader more than they help; `all` lists them); every
    # version stays in the charts (and in v_versions).
    pages = max(1, -(-len(versions) // TABLE_VERSIONS))
    page = min(max(page, 1), pages)
    end = len(versions) if show_all else len(versions) - (page - 1) * TABLE_VERSIONS
    first = 0 if show_all else max(end - TABLE_VERSIONS, 0)
    table = [(versions[i], versions[i - 1] if i > 0 else None) for i in range(first, end)]
    timeline = events if show_all else events[-TIMELINE_EVENTS:]
    hp_names = sorted({k for v, _ in table for k in v.hyperparameters})
    spans = alias_spans(moves)
    current = sorted((sp for sp in spans if sp.until is None), key=lambda sp: sp.alias)
    aliases_at: dict[int, list[str]] = {}
    for sp in current:
        aliases_at.setdefault(sp.version, []).append(sp.alias)
    return {"model_id": model_id, "events": events, "versions": versions, "metric_charts": metric_charts,
            "bytes_chart": bytes_chart, "hp_names": hp_names, "deleted": deleted,
            "table": table, "metric_names": names, "values": values, "best": best_values(values, names),
            "aliases": current, "alias_moves": moves, "aliases_at": aliases_at, "timeline": timeline,
            "page": page, "pages": pages, "show_all": show_all}


def _ref(text: str) -> tuple[str, int]:
    if "@" in text:
        return parse_ref(text.strip())
    raise InvalidMetadataError(f"compare with MODEL_ID@VERSION or a version number, got {text!r}")


def version_page(store: ModelStore, model_id: str, version: int, against: str | None,
                 at: datetime | None) -> dict[str, Any]:
    validate_model_id(model_id)
    validate_version(version)
    md = store.as_of(at).get_model_metadata(model_id, version) if at else store.get_model_metadata(model_id, version)
    parent = _parent_of(md)
    parent_md = store.get_model_metadata(*parent) if parent else None
    me = format_ref(model_id, version)
    with store.catalog.session() as s:  # one session for the page
        lin = history.lineage(s, model_id, version)
        depths = {me: 0}
        depths.update({n.ref: -n.depth for n in lin.ancestors})
        depths.update({n.ref: n.depth for n in lin.descendants if n.ref not in depths})
        raw = browse.lineage_edges(s, [parse_ref(r) for r in depths])
        others = [v.version for v in browse.version_facts(s, model_id, at)]
        sharing = history.content_diff(s, parent_md.saved_digest(), md.saved_digest()) if parent_md else None
        moves = [m for m in history.alias_history(s, model_id) if at is None or m.moved_at <= at]
        made = next((e for e in history.events(s, model_id)
                     if e.version == version and e.kind in ("save", "rollback")), None)
    spans = [sp for sp in alias_spans(moves) if sp.version == version]
    edges = [(format_ref(m, v), format_ref(pm, pv), rel) for m, v, pm, pv, rel in raw]
    ds = md.lineage.get("dataset") if isinstance(md.lineage, dict) else None
    ds_label = None
    if isinstance(ds, dict):
        handler = ds.get("handler")
        ds_label = (handler.get("class") if isinstance(handler, dict) else None) or ds.get("class") or "dataset"
        ds_label = str(ds_label).rsplit(".", 1)[-1]
    graph = charts.layered_graph(me, depths, edges, ds_label)
    diff = None
    if against:
        other = (model_id, whole_number(against, "version", 0)) if against.strip().isdigit() else _ref(against)
        diff = store.diff(other, (model_id, version))
    return {"md": md, "ref": me, "graph": graph, "lineage": lin, "parent": parent and format_ref(*parent),
            "sharing": sharing, "diff": diff, "against": against or "", "others": others, "made": made,
            "aliases_now": [sp for sp in spans if sp.until is None],
            "aliases_before": [sp for sp in spans if sp.until is not None]}


def _parent_of(md) -> tuple[str, int] | None:
    """The version this one is compared with for chunk sharing: its first parent, the
    version it rolled back to, or the version before it."""
    if md.parents:
        return parse_ref(md.parents[0])
    if md.rollback_of:
        return md.model_id, md.rollback_of
    if md.version and md.version > 1:
        return md.model_id, md.version - 1
    return None


def store_page(store: ModelStore) -> dict[str, Any]:
    report = audit(store, walk=False)
    t = report.totals
    cards = [("full copies would take", human(t.logical_bytes)), ("stored (all packs)", human(t.physical_bytes)),
             ("dedup ratio", f"{t.dedup_ratio:.1f}×"), ("models", f"{t.models} ({t.deleted_models} deleted)"),
             ("versions stored", f"{t.versions} (+{t.purged_versions} purged)"),
             ("freeable by gc", human(max(t.unreferenced_bytes, 0)))]
    # The audit's own SVG (it escapes every label itself), as `cas-repo audit --html` draws it.
    return {"report": report, "cards": cards, "growth_svg": growth_chart(report),
            "models_svg": model_chart(report), "human": human}


def sql_rows(store: ModelStore, query: str, limit: int = 1000) -> dict[str, Any]:
    table = store.sql(query)
    shown = table.slice(0, limit)
    return {"columns": table.column_names, "rows": [list(r.values()) for r in tables.rows_of(shown)],
            "total": table.num_rows, "limit": limit}


def sql_download(store: ModelStore, query: str, fmt: str) -> bytes:
    """The whole result of ``query`` as CSV or Parquet bytes (as ``cas-repo sql --format``)."""
    table = store.sql(query)
    if fmt == "parquet":
        sink = io.BytesIO()
        tables.write_parquet(table, sink)
        return sink.getvalue()
    return tables.csv_bytes(table)


__all__ = ["AliasSpan", "ModelQuery", "alias_spans", "best_values", "lower_is_better", "model_page", "models_page",
           "sql_download", "sql_rows", "store_page", "version_page"]
