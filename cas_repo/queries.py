"""Reads answered by the catalog index: history, events, lineage, diffs, alias moves, SQL.

Each function takes the store's :class:`~cas_repo.catalog.Catalog` (caught up with the
log on every session) and returns values. The catalog's modules are imported inside the
functions: a process that only saves and loads never imports DuckDB or Arrow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog.values import (
    AliasChange,
    AliasPointer,
    ContentDiff,
    Event,
    ExportReport,
    Lineage,
    MetricRecord,
    StoreStats,
)
from .errors import InvalidMetadataError, ModelNotFoundError
from .metadata import ModelMetadata, split_ref, validate_alias, validate_model_id, validate_version
from .rows import to_metadata

if TYPE_CHECKING:
    import pyarrow as pa

    from .catalog import Catalog

# Marks a hyperparameter or metric that one side of a diff does not have.
ABSENT = None


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """How version ``b`` differs from ``a``: changed settings, metrics and content bytes.

    ``hyperparameters`` holds only changed keys (nested keys dotted), as ``(a, b)``
    with ``None`` where a side lacks the key; ``metrics`` holds every metric of either.
    """

    a: ModelMetadata
    b: ModelMetadata
    hyperparameters: dict[str, tuple[Any, Any]]
    metrics: dict[str, tuple[float | None, float | None]]
    content: ContentDiff

    @property
    def same_content(self) -> bool:
        return self.a.digest == self.b.digest


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested hyperparameters as one level, keys joined by dots: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def diff_side(r: str | tuple[str, int]) -> tuple[str, int | None]:
    """A diff side as ``get_model_metadata`` arguments; a bare model id is not a version."""
    if isinstance(r, str):
        _, version, alias = split_ref(r)
        if version is None and alias is None:
            raise InvalidMetadataError(f"a version reference looks like 'model_id@3' or 'model_id@prod', got {r!r:.80}")
        return (r, None)
    return r


def lineage_target(model_id: str, version: int | None) -> tuple[str, int | None]:
    """``lineage``'s arguments checked: a version, given or in a reference, is required."""
    if version is not None:
        validate_version(version)
    elif "@" not in model_id:
        raise InvalidMetadataError(f"lineage needs a version: lineage({model_id!r}, 3) or "
                                   f"lineage('{model_id}@prod')")
    return model_id, version


def history(catalog: Catalog, model_id: str) -> list[ModelMetadata]:
    """Every version of ``model_id``, oldest first.

    Raises:
        ModelNotFoundError: no such model_id.
    """
    validate_model_id(model_id)
    with catalog.session() as s:
        rows = s.history(model_id)
    if not rows:
        raise ModelNotFoundError(model_id)
    return [to_metadata(r) for r in rows]


def stats(catalog: Catalog) -> StoreStats:
    """Logical vs physical bytes of the whole store."""
    with catalog.session() as s:
        return s.stats()


def sql(catalog: Catalog, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
    """One read-only SQL query over the catalog views, values bound (docs/sql.md)."""
    from .catalog import query as user_sql

    with catalog.reader() as con:
        return user_sql.run_query(con, query, params)


def export(catalog: Catalog, directory: str | os.PathLike[str]) -> ExportReport:
    """Every view as Parquet under ``directory``, from one consistent snapshot."""
    from .catalog import query as user_sql

    with catalog.reader() as con:
        return user_sql.export_views(con, Path(directory))


def events(catalog: Catalog, model_id: str) -> list[Event]:
    """Every event of ``model_id``, in order.

    Raises:
        ModelNotFoundError: no such model_id.
    """
    from .catalog import history as catalog_history

    validate_model_id(model_id)
    with catalog.session() as s:
        found = catalog_history.events(s, model_id)
    if not found:
        raise ModelNotFoundError(model_id)
    return found


def lineage(catalog: Catalog, md: ModelMetadata) -> Lineage:
    """Ancestors and descendants of the version ``md`` describes."""
    from .catalog import history as catalog_history

    with catalog.session() as s:
        return catalog_history.lineage(s, md.model_id, md.saved_version())


def diff(catalog: Catalog, a: ModelMetadata, b: ModelMetadata) -> VersionDiff:
    """How version ``b`` differs from ``a``: hyperparameters, metrics and content bytes."""
    from .catalog import history as catalog_history

    with catalog.session() as s:
        content = catalog_history.content_diff(s, a.saved_digest(), b.saved_digest())
    ha, hb = flatten(a.hyperparameters), flatten(b.hyperparameters)
    hyper = {k: (ha.get(k, ABSENT), hb.get(k, ABSENT)) for k in sorted(ha.keys() | hb.keys())
             if ha.get(k, ABSENT) != hb.get(k, ABSENT) or (k in ha) != (k in hb)}
    metrics = {k: (a.metrics.get(k), b.metrics.get(k)) for k in sorted(a.metrics.keys() | b.metrics.keys())}
    return VersionDiff(a, b, hyper, metrics, content)


def all_aliases(catalog: Catalog) -> list[AliasPointer]:
    """Every alias set in the store, by model and name."""
    from .catalog import history as catalog_history

    with catalog.session() as s:
        return catalog_history.current_aliases(s)


def metric_history(catalog: Catalog, model_id: str, version: int | None = None) -> list[MetricRecord]:
    """Every metric value recorded for ``model_id`` (or one version), in the order recorded.

    Raises:
        ModelNotFoundError: no such model_id.
    """
    from .catalog import history as catalog_history

    validate_model_id(model_id)
    with catalog.session() as s:
        found = catalog_history.metric_history(s, model_id, version)
        if not found and not s.rows("SELECT 1 FROM models WHERE model_id = ?", [model_id]):
            raise ModelNotFoundError(model_id)
    return found


def alias_history(catalog: Catalog, model_id: str, alias: str | None = None) -> list[AliasChange]:
    """Every recorded move of ``model_id``'s aliases (or of one), in log order."""
    from .catalog import history as catalog_history

    validate_model_id(model_id)
    if alias is not None:
        validate_alias(alias)
    with catalog.session() as s:
        return catalog_history.alias_history(s, model_id, alias)
