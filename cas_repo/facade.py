"""CasModelRepository: the async IModelRepository over a ModelStore.

Every call runs the synchronous core in a worker thread (``asyncio.to_thread``), so an
event loop never blocks on hashing, disk or the catalog lock. Methods are generated from
the core's, so signatures and docstrings cannot drift apart.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

from .metadata import ModelMetadata
from .ports import IModelRepository
from .repository import DEFAULT_ROOT, ModelStore


def _offload(name: str) -> Callable[..., Any]:
    core = getattr(ModelStore, name)

    @functools.wraps(core)
    async def method(self: CasModelRepository, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.store, name), *args, **kwargs)

    return method


class CasModelRepository(IModelRepository):
    """Async facade: the seed's five methods plus versions, rollback, history and batch loads.

    Args:
        root: store folder (default ``data/cas``) or an existing :class:`ModelStore`.
        use_qlib_recorder: also log each save to Qlib's Recorder (see ``cas_repo.qlib_support``).
        **options: passed to :class:`ModelStore` (``catalog``, ``key``, ``backend_options``, …).
    """

    def __init__(self, root: str | os.PathLike[str] | ModelStore = DEFAULT_ROOT, **options: Any) -> None:
        self.store = root if isinstance(root, ModelStore) else ModelStore(root, **options)

    save_model = _offload("save_model")
    load_model = _offload("load_model")
    load_model_by_recorder = _offload("load_model_by_recorder")
    get_model_metadata = _offload("get_model_metadata")
    list_models = _offload("list_models")
    delete_model = _offload("delete_model")
    undelete_model = _offload("undelete_model")
    rollback = _offload("rollback")
    history = _offload("history")
    set_tags = _offload("set_tags")
    stats = _offload("stats")
    sql = _offload("sql")
    export = _offload("export")
    events = _offload("events")
    lineage = _offload("lineage")
    diff = _offload("diff")
    set_alias = _offload("set_alias")
    remove_alias = _offload("remove_alias")
    aliases = _offload("aliases")
    alias_history = _offload("alias_history")
    all_aliases = _offload("all_aliases")
    log_metrics = _offload("log_metrics")
    metric_history = _offload("metric_history")
    search_versions = _offload("search_versions")
    search_models = _offload("search_models")
    leaderboard = _offload("leaderboard")
    compare = _offload("compare")

    async def load_models(self, model_ids: Iterable[str]) -> list[tuple[Any, ModelMetadata]]:
        """Load several models concurrently (each in its own worker thread), in order."""
        return list(await asyncio.gather(*(self.load_model(m) for m in model_ids)))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.close)

    def close(self) -> None:
        self.store.close()

    async def __aenter__(self) -> CasModelRepository:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
