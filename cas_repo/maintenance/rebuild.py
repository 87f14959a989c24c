"""rebuild-catalog: throw this machine's catalog index away and fold the log into a new one.

The index holds nothing the log does not: every row comes from folding the log's
commits in order (:mod:`cas_repo.catalog.feed`), so a rebuild is a reset and a catch-up
from position 0. A damaged index is rebuilt the same way by itself (the catalog moves
it aside when DuckDB cannot open it); this command is for an index one no longer trusts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..catalog.checks import counts_in, index_counts
from ..repository import ModelStore
from .common import ProgressFactory, indexed_position, maintenance_lock, no_progress, progress_bar


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What the rebuilt index holds, what the old one held, and what the fold refused."""

    catalog: str
    position: int
    models: int
    events: int
    objects: int
    packs: int
    before: tuple[int, int] | None
    problems: tuple[str, ...]


def rebuild_catalog(root: str | os.PathLike[str], *, catalog: str | os.PathLike[str] | None = None,
                    backend_options: dict[str, Any] | None = None, key: str | bytes | None = None,
                    progress: ProgressFactory = no_progress) -> RebuildReport:
    """Rebuild the catalog index of the store at ``root`` from its log.

    With a store key (``key`` or ``CAS_REPO_KEY``), a commit whose seal does not verify
    stops the fold, as it stops every reader (``IntegrityError``; ``cas-repo fsck`` says
    which).
    """
    with ModelStore(root, catalog=catalog, backend_options=backend_options, key=key) as store:
        return rebuild_index(store, progress=progress)


def rebuild_index(store: ModelStore, *, progress: ProgressFactory = no_progress) -> RebuildReport:
    """Reset ``store``'s catalog index and fold its whole log again."""
    with maintenance_lock(store.catalog.path):
        before = counts_in(store.catalog.path)
        with progress_bar(progress, None, "rebuild: folding the log") as bar:
            store.catalog.reset()
            with store.catalog.session() as s:
                bar.advance()
                position = indexed_position(s)
                n = index_counts(s)
        with store.ledger.current() as st:
            refused = [(p, i) for p, i in st.refused if p <= position]
    problems = tuple(f"commit {p}, operation {i}: refused by the fold (see `cas-repo fsck`)" for p, i in refused)
    return RebuildReport(str(store.catalog.path), position, before=before, problems=problems, **n)
