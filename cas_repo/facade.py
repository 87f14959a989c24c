"""CasModelRepository: the async IModelRepository over a ModelStore.

Every call runs the synchronous core in a worker thread (``asyncio.to_thread``), so an
event loop never blocks on hashing, disk or the catalog lock. Methods are generated from
the core's, so signatures and docstrings cannot drift apart. :meth:`CasModelRepository.follow`
runs the core's follower in a thread of its own and hands its changes to the loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from .follow import Change
from .metadata import ModelMetadata
from .ports import IModelRepository
from .repository import DEFAULT_ROOT, ModelStore

# How many changes the follower thread may read ahead of an async consumer.
_AHEAD = 64


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

    async def follow(self, after: int | None = None, **options: Any) -> AsyncIterator[Change]:
        """:meth:`ModelStore.follow` as an async iterator (same arguments, but no ``stop``): leave
        the ``async for`` (break, cancel, ``aclose()``) to end it.

        The follower polls in a thread of its own, at most :data:`_AHEAD` changes ahead of the
        consumer, so the event loop never waits on the store.
        """
        if "stop" in options:
            raise TypeError("follow() of the async facade takes no stop event: leave the `async for` to end it")
        stop = threading.Event()
        # Taking the start position reads the store: in a worker thread too. A bad argument raises here.
        follower = await asyncio.to_thread(functools.partial(self.store.follow, after, stop=stop, **options))
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        room = threading.Semaphore(_AHEAD)

        def hand(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, (kind, value))
            except RuntimeError:  # the loop closed: no one is listening any more
                stop.set()

        def produce() -> None:
            try:
                for change in follower:
                    while not room.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    hand("change", change)
                hand("end", None)
            except BaseException as exc:  # handed to the consumer, raised there
                hand("error", exc)

        threading.Thread(target=produce, name="cas-repo-follow", daemon=True).start()
        try:
            while True:
                kind, value = await items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                room.release()
                yield value
        finally:
            stop.set()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.close)

    def close(self) -> None:
        self.store.close()

    async def __aenter__(self) -> CasModelRepository:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
