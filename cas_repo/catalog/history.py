"""History reads: event log, state as of a time, lineage walks and content diffs.

They use the macros and views of ``0002_views.sql``, so the library answers exactly what
users' SQL over the same views answers.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from ..log.state import VersionRow
from .catalog import VERSION_COLS, ZONE_SCAN_VERSIONS, Session, versions_from_rows
from .convert import aware_utc, naive_utc
from .values import (
    AliasChange,
    AliasPointer,
    ContentDiff,
    Event,
    Lineage,
    LineageNode,
    MetricRecord,
    ModelAt,
    PolicyChange,
)


def events(s: Session, model_id: str) -> list[Event]:
    """Every event of ``model_id`` in order, with the tags each one set."""
    tags: dict[int, dict[str, str | None]] = {}
    for seq, key, value in s.rows(
            "SELECT seq, key, value FROM event_tags WHERE model_id = ? ORDER BY seq, key", [model_id]):
        tags.setdefault(seq, {})[key] = value
    found = s.rows("SELECT seq, kind, version, event_at, author, host FROM v_events WHERE model_id = ? ORDER BY seq",
                   [model_id])
    # The metrics v_metric_history gives each event (a save's or rollback's own, a metrics
    # event's logged values), read table by table: DuckDB does not push a filter on that
    # view through its joins, and joined every version with every event first (~2.7 s at
    # 1M versions). A long history's versions are read by min/max (see cluster.py).
    saves = {version for _, kind, version, *_ in found if kind in ("save", "rollback")}
    with s.by_min_max(len(saves) >= ZONE_SCAN_VERSIONS):
        saved = {version: m for version, m in s.rows(
            "SELECT version, metrics FROM versions WHERE model_id = ?", [model_id]) if version in saves}
    logged: dict[int, dict[str, float]] = {}
    for seq, key, value in s.rows("SELECT seq, metric, value FROM metric_log WHERE model_id = ? ORDER BY seq, metric",
                                  [model_id]):
        logged.setdefault(seq, {})[key] = value
    metrics: dict[int, dict[str, float]] = {}
    for seq, kind, version, *_ in found:
        held = dict(sorted(saved.get(version, {}).items())) if kind in ("save", "rollback") else {}
        if held or seq in logged:
            metrics[seq] = {**held, **logged.get(seq, {})}
    return [
        Event(model_id, seq, kind, version, aware_utc(at), tags.get(seq, {}), author, host, metrics.get(seq, {}))
        for seq, kind, version, at, author, host in found
    ]


def models_at(s: Session, at: datetime, model_id: str | None = None) -> list[ModelAt]:
    """The state of each model (or of one) at ``at``, replayed from the event log."""
    rows = s.rows(
        "SELECT model_id, version, deleted, last_seq, last_event_at FROM models_as_of(?) "
        "WHERE ? IS NULL OR model_id = ? ORDER BY model_id",
        [naive_utc(at), model_id, model_id])
    return [ModelAt(m, v, d, q, aware_utc(t)) for m, v, d, q, t in rows if v is not None]


def versions_at(s: Session, at: datetime, *, model_id: str | None = None, version: int | None = None,
                experiment_name: str | None = None, model_type: str | None = None,
                include_deleted: bool = True) -> list[VersionRow]:
    """Version rows as they stood at ``at``: tags and the ``deleted`` flag of that time.

    With ``version`` None, each model's newest version then (newest save first);
    otherwise that version, if it existed then.
    """
    t = naive_utc(at)
    pick = "v.version = a.version" if version is None else "v.version = ?"
    params: list = [t] + ([] if version is None else [version])
    rows = s.rows(
        f"SELECT {VERSION_COLS.replace('m.deleted', 'a.deleted')} "
        "FROM models_as_of(?) a JOIN versions v ON v.model_id = a.model_id AND " + pick + " "
        "WHERE v.version <= a.version AND (? IS NULL OR a.model_id = ?) "
        "AND (? IS NULL OR v.experiment_name = ?) AND (? IS NULL OR v.model_type = ?) "
        "AND (? OR NOT a.deleted) ORDER BY v.saved_at DESC, v.model_id",
        [*params, model_id, model_id, experiment_name, experiment_name, model_type, model_type, include_deleted])
    found = versions_from_rows(rows)
    if not found:
        return []
    ids = sorted({r.model_id for r in found})
    tags: dict[tuple[str, int], dict[str, str]] = {}
    for mid, ver, key, value in s.rows(
            "SELECT model_id, version, key, value FROM tags_as_of(?) "
            "WHERE model_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY key", [t, ids]):
        tags.setdefault((mid, ver), {})[key] = value
    # Metric values logged later than ``at`` were not there yet.
    logged: dict[tuple[str, int], dict[str, float]] = {}
    for mid, ver, metric, value in s.rows(
            "SELECT model_id, version, metric, value FROM metrics_as_of(?) "
            "WHERE model_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY metric", [t, ids]):
        logged.setdefault((mid, ver), {})[metric] = value
    return [dataclasses.replace(r, tags=tags.get((r.model_id, r.version), {}),
                                logged=logged.get((r.model_id, r.version), {})) for r in found]


def lineage(s: Session, model_id: str, version: int) -> Lineage:
    """Ancestors and descendants of ``model_id@version`` (nearest first)."""
    def walk(macro: str) -> tuple[LineageNode, ...]:
        # `macro` is one of the two names below, never a caller's text.
        return tuple(LineageNode(*r) for r in s.rows(
            f"SELECT model_id, version, depth, relation FROM {macro}(?, ?)", [model_id, version]))

    return Lineage(model_id, version, walk("lineage_ancestors"), walk("lineage_descendants"))


def content_diff(s: Session, manifest_a: str, manifest_b: str) -> ContentDiff:
    """Distinct chunk bytes shared by two manifests, added in ``b`` and dropped from ``a``."""
    (shared, added, removed, n_shared, n_added, n_removed), = s.rows(
        "WITH a AS (SELECT DISTINCT chunk, size FROM manifest_chunks WHERE manifest = ?), "
        "b AS (SELECT DISTINCT chunk, size FROM manifest_chunks WHERE manifest = ?), "
        "j AS (SELECT a.chunk IS NOT NULL AS in_a, b.chunk IS NOT NULL AS in_b, "
        "coalesce(a.size, b.size) AS size FROM a FULL OUTER JOIN b ON a.chunk = b.chunk) "
        "SELECT coalesce(sum(size) FILTER (WHERE in_a AND in_b), 0), "
        "coalesce(sum(size) FILTER (WHERE in_b AND NOT in_a), 0), "
        "coalesce(sum(size) FILTER (WHERE in_a AND NOT in_b), 0), "
        "count(*) FILTER (WHERE in_a AND in_b), count(*) FILTER (WHERE in_b AND NOT in_a), "
        "count(*) FILTER (WHERE in_a AND NOT in_b) FROM j",
        [manifest_a, manifest_b])
    return ContentDiff(int(shared), int(added), int(removed), n_shared, n_added, n_removed)


def alias_history(s: Session, model_id: str, alias: str | None = None) -> list[AliasChange]:
    """Every recorded move of ``model_id``'s aliases (or of ``alias``), in log order."""
    rows = s.rows("SELECT model_id, alias, from_version, to_version, moved_at, moved_by, log_position, author "
                  "FROM v_alias_history WHERE model_id = ? AND (?::VARCHAR IS NULL OR alias = ?) "
                  "ORDER BY log_position, alias", [model_id, alias, alias])
    return [AliasChange(m, a, f, t, aware_utc(at), by, p, who) for m, a, f, t, at, by, p, who in rows]


def policy_history(s: Session) -> list[PolicyChange]:
    """Every policy the store had (set or cleared), in log order."""
    rows = s.rows("SELECT log_position, previous, set_at, set_by, policy::VARCHAR, author FROM v_policy_history "
                  "ORDER BY log_position")
    return [PolicyChange(p, prev, aware_utc(at), by, None if policy is None else json.loads(policy), who)
            for p, prev, at, by, policy, who in rows]


def metric_history(s: Session, model_id: str, version: int | None = None) -> list[MetricRecord]:
    """Every metric value recorded for ``model_id`` (or one version), in the order recorded."""
    rows = s.rows("SELECT model_id, version, metric, value, source, recorded_at, author, seq FROM v_metric_history "
                  "WHERE model_id = ? AND (?::INTEGER IS NULL OR version = ?) ORDER BY seq, metric",
                  [model_id, version, version])
    return [MetricRecord(m, v, k, x, src, aware_utc(at), who, q) for m, v, k, x, src, at, who, q in rows]


def current_aliases(s: Session) -> list[AliasPointer]:
    """Every alias set in the store, by model and name."""
    rows = s.rows("SELECT model_id, alias, version, moved_at, moved_by, author FROM v_aliases "
                  "ORDER BY model_id, alias")
    return [AliasPointer(m, a, v, aware_utc(at), by, who) for m, a, v, at, by, who in rows]


def aliases_at(s: Session, at: datetime, model_id: str) -> dict[str, int]:
    """``model_id``'s aliases as they stood at ``at`` (inclusive), name -> version."""
    return dict(s.rows("SELECT alias, version FROM aliases_as_of(?) WHERE model_id = ? ORDER BY alias",
                       [naive_utc(at), model_id]))
