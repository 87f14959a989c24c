"""Where a save or load spends its time: wraps the core's phase functions with timers.

Timers nest: each phase is charged only its *own* time (a pack write inside a catalog
session is not counted twice), so the phases of a single-threaded operation add up to
at most its total, and the rest is reported as "other". Phases run by worker threads
(the store hashes and writes packs of a large save on two) overlap the caller's, so
there the sum can exceed the wall time and "other" is then zero. The wrappers cost ~1 µs a call, so headline
timings are measured unwrapped and the breakdown in a separate pass.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

# (module path, attribute holder, attribute, phase). The holder is the object whose
# attribute the calling code looks up at call time, so the wrapper is actually reached.
_SITES = (
    ("cas_repo.serialization", None, "dumps", "pickling"),
    ("cas_repo.content", None, "_refs", "chunking (FastCDC)"),
    ("cas_repo.content", None, "hash_each", "chunk hashing (BLAKE3)"),
    ("cas_repo.content", None, "hash_bytes", "chunk hashing (BLAKE3)"),
    ("cas_repo.saving", None, "to_content", "manifest"),
    ("cas_repo.compression", None, "maybe_compress", "compress"),
    ("cas_repo.objects.store", "ObjectStore", "_lay_out", "pack encode + hash"),
    ("cas_repo.objects.local", "LocalBackend", "put", "pack write + fsync"),
    ("cas_repo.log.ledger", "Ledger", "_refresh", "log catch-up"),
    ("cas_repo.log.ops", None, "metadata_json", "metadata encode"),
    ("cas_repo.log.log", "Log", "encode", "commit encode"),
    ("cas_repo.objects.local", "LocalBackend", "create", "log commit (write + fsync + link)"),
    ("cas_repo.log.log", "Log", "decode", "commit check + parse"),
    ("cas_repo.log.ledger", "Ledger", "_fold", "fold into state"),
    ("cas_repo.objects.local", "LocalBackend", "read_ranges", "pack read"),
    ("cas_repo.objects.local", "LocalBackend", "read_ranges_into", "pack read"),
    ("cas_repo.content", None, "_new_buffer", "buffer allocation"),
    ("cas_repo.objects.store", None, "hash_bytes", "verify (BLAKE3)"),
    ("cas_repo.compression", None, "decompress", "decompress"),
    ("cas_repo.loading", None, "from_content", "reassemble"),
    ("cas_repo.serialization", None, "loads", "unpickling"),
)
SESSION_PHASE = "catalog open + close"


class PhaseClock:
    """Accumulates exclusive seconds per phase while :meth:`installed` is active."""

    def __init__(self, extra_sites: tuple[tuple[str, str | None, str, str], ...] = ()) -> None:
        self.sites = _SITES + tuple(extra_sites)
        self.totals: dict[str, float] = defaultdict(float)
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def _stack(self) -> list[list[float]]:
        """This thread's active calls, each as [child seconds]: worker threads (the store
        writes packs from two) nest their own phases; their time overlaps the caller's."""
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _charge(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.totals[phase] += seconds

    def _wrap(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._stack
            frame = [0.0]
            stack.append(frame)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t
                stack.pop()
                self._charge(phase, elapsed - frame[0])
                if stack:
                    stack[-1][0] += elapsed

        return timed

    def _wrap_session(self, session: Callable[..., Any]) -> Callable[..., Any]:
        clock = self

        @contextlib.contextmanager
        def timed(catalog: Any) -> Iterator[Any]:
            stack = clock._stack
            frame = [0.0]
            stack.append(frame)
            t = time.perf_counter()
            try:
                with session(catalog) as s:
                    inner = time.perf_counter()
                    child_before = frame[0]
                    try:
                        yield s
                    finally:
                        # The body's time belongs to its own phases, not to the session.
                        frame[0] = child_before + (time.perf_counter() - inner)
            finally:
                elapsed = time.perf_counter() - t
                stack.pop()
                clock._charge(SESSION_PHASE, elapsed - frame[0])
                if stack:
                    stack[-1][0] += elapsed

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[PhaseClock]:
        import importlib

        from cas_repo.catalog.catalog import Catalog

        with contextlib.ExitStack() as undo:
            for module_name, holder_name, attr, phase in self.sites:
                try:
                    module = importlib.import_module(module_name)
                except ImportError:
                    continue  # a core without this module: its time shows as "other"
                holder = getattr(module, holder_name, None) if holder_name else module
                # The raw attribute, not what getattr binds: a classmethod must be put back
                # as the classmethod it was.
                raw = inspect.getattr_static(holder, attr, None) if holder is not None else None
                if raw is None:
                    continue  # a core without this phase function: its time shows as "other"
                undo.callback(setattr, holder, attr, raw)
                if isinstance(raw, (classmethod, staticmethod)):
                    setattr(holder, attr, type(raw)(self._wrap(raw.__func__, phase)))
                else:
                    setattr(holder, attr, self._wrap(raw, phase))
            original_session = Catalog.session
            undo.callback(setattr, Catalog, "session", original_session)
            Catalog.session = self._wrap_session(original_session)  # type: ignore[method-assign]
            yield self

    def take(self) -> dict[str, float]:
        """The totals so far (seconds), then start again from zero."""
        out = dict(self.totals)
        self.totals.clear()
        return out


def breakdown(op: Callable[[], Any], repeats: int, *, setup: Callable[[], Any] | None = None,
              ) -> tuple[dict[str, list[float]], list[float]]:
    """Run ``op`` ``repeats`` times with phase timers; per-phase seconds and totals, per run.

    ``setup`` runs before each; its time is discarded.
    """
    clock = PhaseClock()
    names = [*dict.fromkeys(phase for *_, phase in _SITES), SESSION_PHASE, "other"]
    per_phase: dict[str, list[float]] = {name: [] for name in names}
    totals = []
    with clock.installed():
        for _ in range(repeats):
            if setup:
                setup()
            clock.take()
            t = time.perf_counter()
            op()
            total = time.perf_counter() - t
            phases = clock.take()
            phases["other"] = max(0.0, total - sum(phases.values()))
            totals.append(total)
            for name in names:
                per_phase[name].append(phases.get(name, 0.0))
    return {k: v for k, v in per_phase.items() if any(v)}, totals
