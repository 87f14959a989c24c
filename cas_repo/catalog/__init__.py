"""The DuckDB catalog: versions, lineage, tags, events and object locations (all SQL lives here)."""

from .catalog import Catalog, Session
from .values import ContentOverlap, EventCommit, ModelState, SaveCommit, StoreStats, VersionRow

__all__ = ["Catalog", "ContentOverlap", "EventCommit", "ModelState", "SaveCommit", "Session", "StoreStats", "VersionRow"]
