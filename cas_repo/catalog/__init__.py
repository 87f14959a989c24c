"""The DuckDB catalog: versions, lineage, tags, events and object locations (all SQL lives here)."""

from .catalog import Catalog, Session
from .values import EventCommit, ModelState, SaveCommit, StoreStats, VersionRow

__all__ = ["Catalog", "EventCommit", "ModelState", "SaveCommit", "Session", "StoreStats", "VersionRow"]
