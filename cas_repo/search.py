"""Searching versions and ranking models: ``search_versions``, ``search_models``, ``leaderboard``.

Each takes the store's :class:`~cas_repo.catalog.Catalog` and returns values. Filters
are parsed here (:mod:`cas_repo.filters`, pure) and compiled to SQL in the catalog
(:mod:`cas_repo.catalog.search`); the catalog's modules are imported inside the
functions, so a process that only saves and loads never imports DuckDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import InvalidFilterError
from .filters import Filter, OrderKey, parse_filter, parse_order_by
from .metadata import ModelMetadata
from .rows import to_metadata

if TYPE_CHECKING:
    from .catalog import Catalog
    from .catalog.ranking import Leaderboard


def _limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidFilterError(f"limit is a positive whole number (or None for every match), got {limit!r}")
    return limit


def search_versions(catalog: Catalog, where: str | Filter | None = None,
                    order_by: str | Sequence[str | OrderKey] | None = None, limit: int | None = None,
                    include_deleted: bool = False, *, heads_only: bool = False) -> list[ModelMetadata]:
    """The versions matching ``where`` (docs/search.md), sorted by ``order_by``.

    With ``heads_only``, only each model's newest version is considered. Metrics are each
    version's current ones.

    Raises:
        InvalidFilterError: the filter, an order key or the limit is malformed.
    """
    from .catalog import search as catalog_search

    f, order, n = parse_filter(where), parse_order_by(order_by), _limit(limit)
    with catalog.session() as s:
        rows = catalog_search.search_versions(s, f, order, n, include_deleted, heads_only)
    return [to_metadata(r) for r in rows]


def leaderboard(catalog: Catalog, metric: str, experiment: str | None = None, higher_is_better: bool = True,
                where: str | Filter | None = None, limit: int | None = None,
                include_deleted: bool = False) -> Leaderboard:
    """Each model's best version by ``metric``, the best model first.

    Only versions that have the metric and match ``where`` (and ``experiment``) count;
    of a model's versions with equal values, the newest wins.

    Raises:
        InvalidFilterError: the metric name is empty, or the filter or limit is malformed.
    """
    from .catalog import search as catalog_search

    if not isinstance(metric, str) or not metric:
        raise InvalidFilterError(f"leaderboard needs a metric name, e.g. 'IC', got {metric!r}")
    f, n = parse_filter(where), _limit(limit)
    with catalog.session() as s:
        return catalog_search.leaderboard(s, metric, experiment=experiment or None,
                                          higher_is_better=higher_is_better, f=f, limit=n,
                                          include_deleted=include_deleted)
