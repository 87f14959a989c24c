"""The DuckDB catalog: the local, derived index of a store's log (all SQL lives here).

The package resolves ``Catalog`` and ``Session`` lazily: :mod:`.values` and :mod:`.paths`
are light, and a process that only saves and loads never imports DuckDB (~0.1 s).

| module | what it holds |
|---|---|
| ``catalog``, ``lock``, ``migrations`` | the index file: sessions under a file lock, schema migrations |
| ``feed``, ``bulk_fold``, ``writes`` | folding the log's commits into the tables |
| ``history``, ``browse``, ``query``, ``tables`` | reads: history, time travel, the view's pages, users' SQL |
| ``audit``, ``checks``, ``maintenance``, ``retention``, ``recorder``, ``bulk`` | the SQL half of maintenance tools |
"""

from typing import Any

from .values import StoreStats

__all__ = ["Catalog", "Session", "StoreStats"]


def __getattr__(name: str) -> Any:
    if name in ("Catalog", "Session"):
        from . import catalog

        return getattr(catalog, name)
    raise AttributeError(name)
