"""Comparing any number of versions side by side: metrics, differing settings, shared bytes.

``cas-repo compare`` and the web view's compare page render a :class:`Comparison`.
Metrics are each version's current ones (``v_metrics``); bytes shared are distinct
chunk bytes, counted as ``cas-repo diff`` counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog.ranking import SharedBytes
from .errors import InvalidMetadataError
from .metadata import ModelMetadata, format_ref
from .queries import flatten

if TYPE_CHECKING:
    from .catalog import Catalog


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One metric across the compared versions (None where a version lacks it).

    ``best`` holds the indices of the best value (several on a tie; none when no version
    has the metric): the highest, or the lowest when ``higher_is_better`` is False.
    """

    name: str
    values: tuple[float | None, ...]
    higher_is_better: bool
    best: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ParamRow:
    """A hyperparameter (nested keys dotted) that is not the same in every compared version.

    ``present[i]`` tells a missing key from a stored None in ``values[i]``.
    """

    name: str
    values: tuple[Any, ...] = field(hash=False)
    present: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Versions side by side: one column per version, in the order they were given."""

    versions: tuple[ModelMetadata, ...] = field(hash=False)
    aliases: tuple[tuple[str, ...], ...]
    metrics: tuple[MetricRow, ...]
    hyperparameters: tuple[ParamRow, ...]
    shared: SharedBytes

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(format_ref(m.model_id, m.saved_version()) for m in self.versions)


def _best(values: Sequence[float | None], higher_is_better: bool) -> tuple[int, ...]:
    present = [v for v in values if v is not None]
    if not present:
        return ()
    top = max(present) if higher_is_better else min(present)
    return tuple(i for i, v in enumerate(values) if v == top)


def compare(catalog: Catalog, versions: Sequence[ModelMetadata], lower_is_better: Iterable[str] = ()) -> Comparison:
    """``versions`` side by side (at least two).

    Raises:
        InvalidMetadataError: fewer than two versions.
    """
    from .catalog import search as catalog_search

    if len(versions) < 2:
        raise InvalidMetadataError(f"compare needs at least two versions, got {len(versions)}: "
                                   "e.g. compare(['alpha@1', 'beta@prod'])")
    lower = set(lower_is_better)
    refs = [(m.model_id, m.saved_version()) for m in versions]
    with catalog.session() as s:
        metrics = catalog_search.metrics_of(s, refs)
        aliases = catalog_search.aliases_of(s, refs)
        shared = catalog_search.shared_bytes(s, [m.saved_digest() for m in versions])
    per_version = [metrics.get(r, {}) for r in refs]
    names = sorted({k for m in per_version for k in m})
    rows = []
    for name in names:
        values = tuple(m.get(name) for m in per_version)
        rows.append(MetricRow(name, values, name not in lower, _best(values, name not in lower)))
    flat = [flatten(m.hyperparameters) for m in versions]
    params = []
    for name in sorted({k for f in flat for k in f}):
        present = tuple(name in f for f in flat)
        values = tuple(f.get(name) for f in flat)
        if not all(present) or any(v != values[0] for v in values):
            params.append(ParamRow(name, values, present))
    return Comparison(tuple(versions), tuple(aliases.get(r, ()) for r in refs), tuple(rows), tuple(params), shared)
