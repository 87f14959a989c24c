"""ModelStore's history and SQL methods: thin calls into the catalog, returning values."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .as_of import StoreAsOf
from .catalog import history
from .catalog import query as user_sql
from .catalog.values import ContentDiff, Event, ExportReport, Lineage
from .errors import InvalidMetadataError, ModelNotFoundError
from .metadata import ModelMetadata, split_ref, validate_model_id, validate_version

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


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _ref(r: str | tuple[str, int]) -> tuple[str, int | None]:
    """A diff side as ``get_model_metadata`` arguments; a bare model id is not a version."""
    if isinstance(r, str):
        model_id, version, alias = split_ref(r)
        if version is None and alias is None:
            raise InvalidMetadataError(f"a version reference looks like 'model_id@3' or 'model_id@prod', got {r!r:.80}")
        return (r, None)
    return r


class QueryMixin:
    """SQL, export, time travel, events, lineage and diffs (mixed into ModelStore)."""

    catalog: Catalog

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run one read-only SQL query over the catalog views (docs/sql.md).

        Use ``?`` placeholders with a list, or ``$name`` with a dict: values are bound,
        never spliced into the text. ``.to_pandas()`` on the result gives a DataFrame.

        Raises:
            ReadOnlyQueryError: the query would write or change the session.
            QueryError: the query is malformed or fails.
        """
        with self.catalog.reader() as con:
            return user_sql.run_query(con, query, params)

    def export(self, directory: str | os.PathLike[str]) -> ExportReport:
        """Write every view as Parquet under ``directory`` from one consistent snapshot."""
        with self.catalog.reader() as con:
            return user_sql.export_views(con, Path(directory))

    def as_of(self, at: datetime | str) -> StoreAsOf:
        """The store as it stood at ``at``: ``.list_models()``, ``.load_model()``, ``.models()``.

        ``at`` is a datetime (naive = local time) or ISO 8601 text; it is inclusive.
        """
        return StoreAsOf(self, at)  # type: ignore[arg-type]

    def events(self, model_id: str) -> list[Event]:
        """Every event of ``model_id``: saves, rollbacks, deletes, undeletes and tag changes.

        Raises:
            ModelNotFoundError: no such model_id.
        """
        validate_model_id(model_id)
        with self.catalog.session() as s:
            found = history.events(s, model_id)
        if not found:
            raise ModelNotFoundError(model_id)
        return found

    def lineage(self, model_id: str, version: int | None = None) -> Lineage:
        """Ancestors and descendants of a version through parent and rollback edges.

        Give ``(model_id, version)`` or one reference, ``"model@7"`` / ``"model@prod"``.

        Raises:
            ModelNotFoundError: no such version. AliasNotFoundError: no such alias.
        """
        if version is not None:
            validate_version(version)
        elif "@" not in model_id:
            raise InvalidMetadataError(f"lineage needs a version: lineage({model_id!r}, 3) or "
                                       f"lineage('{model_id}@prod')")
        md = self.get_model_metadata(model_id, version)  # type: ignore[attr-defined]
        with self.catalog.session() as s:
            return history.lineage(s, md.model_id, md.version)

    def diff(self, a: str | tuple[str, int], b: str | tuple[str, int]) -> VersionDiff:
        """Compare two versions (``"model@3"``, ``"model@prod"`` or ``(model_id, version)``): hyperparameters,
        metrics, and content bytes shared and added (``.content.shared_fraction``).

        Raises:
            ModelNotFoundError: either version does not exist.
        """
        ma = self.get_model_metadata(*_ref(a))  # type: ignore[attr-defined]
        mb = self.get_model_metadata(*_ref(b))  # type: ignore[attr-defined]
        with self.catalog.session() as s:
            content = history.content_diff(s, ma.digest, mb.digest)
        ha, hb = _flatten(ma.hyperparameters), _flatten(mb.hyperparameters)
        hyper = {k: (ha.get(k, ABSENT), hb.get(k, ABSENT)) for k in sorted(ha.keys() | hb.keys())
                 if ha.get(k, ABSENT) != hb.get(k, ABSENT) or (k in ha) != (k in hb)}
        metrics = {k: (ma.metrics.get(k), mb.metrics.get(k))
                   for k in sorted(ma.metrics.keys() | mb.metrics.keys())}
        return VersionDiff(ma, mb, hyper, metrics, content)
