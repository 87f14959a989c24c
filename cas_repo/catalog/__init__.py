"""The DuckDB catalog: versions, lineage, tags, events and object locations (all SQL lives here).

The package resolves ``Catalog`` and ``Session`` lazily: the pure values in
:mod:`.values` are used by the log and the save path, which must not pay for importing
DuckDB (~0.1 s) and never open it.
"""

from typing import Any

from .values import EventCommit, MarkCommit, ModelState, SaveCommit, StoreStats, VersionRow

__all__ = ["Catalog", "EventCommit", "MarkCommit", "ModelState", "SaveCommit", "Session", "StoreStats",
           "VersionRow"]


def __getattr__(name: str) -> Any:
    if name in ("Catalog", "Session"):
        from . import catalog

        return getattr(catalog, name)
    raise AttributeError(name)
