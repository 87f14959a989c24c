"""Time travel: a read-only view of a store as it stood at one moment, answered by its index.

The store imports this module on first use of ``as_of`` (it imports the catalog).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .catalog import history
from .catalog.values import ModelAt
from .errors import AliasNotFoundError, InvalidMetadataError, ModelDeletedError, ModelNotFoundError
from .log.state import VersionRow
from .metadata import ModelMetadata, split_ref, utc, validate_model_id, validate_version
from .rows import to_metadata

if TYPE_CHECKING:
    from .catalog import Catalog


def as_timestamp(at: object) -> datetime:
    """``at`` as an aware UTC datetime: a datetime (naive = local time) or ISO 8601 text.

    Raises:
        InvalidMetadataError: anything else.
    """
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.strip())
        except ValueError as exc:
            raise InvalidMetadataError(
                f"{at!r} is not an ISO 8601 time: use e.g. 2026-01-09 or 2026-01-09T18:00Z") from exc
    if not isinstance(at, datetime):
        raise InvalidMetadataError(f"a point in time is a datetime or ISO 8601 text, got {type(at).__name__}")
    return utc(at)


class StoreAsOf:
    """The store's history replayed up to ``at`` (inclusive): what readers saw then.

    Tags, tombstones and aliases are those of that time (``load_model("m@prod")`` loads
    the version ``prod`` pointed at then); a model first saved later does not exist.
    Obtain one with :meth:`ModelStore.as_of`.

    Args:
        catalog: the store's index, which answers every question of that time.
        load_row: reads a version's model from today's store (verified).
        url: the store's URL, for display.
        at: the moment (see :func:`as_timestamp`).
    """

    def __init__(self, catalog: Catalog, load_row: Callable[[VersionRow], Any], url: str,
                 at: datetime | str) -> None:
        self.catalog = catalog
        self._load_row = load_row
        self.url = url
        self.at = as_timestamp(at)

    def __repr__(self) -> str:
        return f"StoreAsOf({self.url!r}, {self.at.isoformat()})"

    def models(self) -> list[ModelAt]:
        """Every model that existed then: its newest version and whether it was tombstoned."""
        with self.catalog.session() as s:
            return history.models_at(s, self.at)

    def list_models(self, experiment_name: str | None = None, model_type: str | None = None,
                    include_deleted: bool = False) -> list[ModelMetadata]:
        """What ``list_models`` returned then: each model's newest version, newest first."""
        with self.catalog.session() as s:
            rows = history.versions_at(s, self.at, experiment_name=experiment_name,
                                       model_type=model_type, include_deleted=include_deleted)
        return [to_metadata(r) for r in rows]

    def get_model_metadata(self, model_id: str, version: int | None = None) -> ModelMetadata:
        """What ``get_model_metadata`` returned then (tags of that time).

        Raises:
            ModelNotFoundError: the model (or version) did not exist yet.
            ModelDeletedError: the model was tombstoned then and no version was given.
        """
        return to_metadata(self._row(model_id, version))

    def load_model(self, model_id: str, version: int | None = None) -> tuple[Any, ModelMetadata]:
        """The model ``load_model`` returned then, read (and verified) from today's store."""
        row = self._row(model_id, version)
        return self._load_row(row), to_metadata(row)

    def aliases(self, model_id: str) -> dict[str, int]:
        """``model_id``'s aliases as they stood then, name -> version: which version was ``prod``."""
        validate_model_id(model_id)
        with self.catalog.session() as s:
            return history.aliases_at(s, self.at, model_id)

    def _row(self, model_id: str, version: int | None) -> VersionRow:
        model_id, version, alias = split_ref(model_id, version)
        if version is not None:
            validate_version(version)
        when = f"as of {self.at.isoformat()}"
        with self.catalog.session() as s:
            if alias is not None:
                version = history.aliases_at(s, self.at, model_id).get(alias)
                if version is None:
                    raise AliasNotFoundError(model_id, alias, when)
            rows = history.versions_at(s, self.at, model_id=model_id, version=version)
        if not rows:
            raise ModelNotFoundError(model_id, version, hint=f"it did not exist {when}")
        if version is None and rows[0].deleted:
            raise ModelDeletedError(model_id, when)
        return rows[0]

