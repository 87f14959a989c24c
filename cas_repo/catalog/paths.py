"""Where a store's catalog index lives (no DuckDB import: the store decides this at open)."""

from __future__ import annotations

import os
from pathlib import Path

from ..digest import hash_bytes

CATALOG_FILE = "catalog.duckdb"
INDEX_ENV = "CAS_REPO_INDEX_DIR"


def default_index_dir() -> Path:
    """Where catalog indexes live unless told: ``$CAS_REPO_INDEX_DIR``, else the user's cache."""
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cas-repo" / "index"


def index_path(store_url: str) -> Path:
    """The default catalog file of the store at ``store_url`` (one folder per store, per user)."""
    return default_index_dir() / hash_bytes(store_url.encode()).hex[:32] / CATALOG_FILE
