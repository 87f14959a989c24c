"""The ledger: a store's log folded into a current :class:`StoreState`, and the commit loop.

Reads fold in whatever commits appeared since the last look (on a folder: one failed
``open`` when there are none; on S3: one LIST), so an acknowledged commit of any
process or machine is seen by every later call. A commit is optimistic: build the
operations from the state at position ``p``, create ``p + 1``; if another writer got
there first, fold its commit in and build again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from .. import faults
from ..errors import ConcurrentModificationError, IntegrityError, StoreError
from ..objects.backend import ObjectBackend
from ..sealing import StoreKey
from . import checkpoint
from .commit import Commit, new_writer_id
from .log import Log
from .ops import Op
from .state import StoreState

logger = logging.getLogger(__name__)

# A checkpoint every this many commits bounds what a new process replays.
CHECKPOINT_EVERY = 1000
# Checkpoints kept: each holds the whole state, so keeping all of them would grow with the
# square of the history. They are derived; a reader that finds one gone takes an older
# one, or replays the log.
CHECKPOINTS_KEPT = 2
# Commits kept in memory after folding, for the catalog index to catch up from.
_RECENT = 4096
# Lost races before a commit gives up: each one means another writer committed.
MAX_ATTEMPTS = 10_000

Build = Callable[[StoreState], Sequence[Op]]


class Ledger:
    """One store's log and its fold (thread-safe; one per open store)."""

    def __init__(self, backend: ObjectBackend, key: StoreKey | None = None, *,
                 legacy: Callable[[], Sequence[Op]] | None = None) -> None:
        self.log = Log(backend, key)
        self.key = key
        self.writer = new_writer_id()
        self._legacy = legacy
        self._state: StoreState | None = None
        self._recent: deque[tuple[int, tuple[Op, ...]]] = deque(maxlen=_RECENT)
        self._lock = threading.RLock()

    # -- reading ------------------------------------------------------------------------

    @contextmanager
    def current(self) -> Iterator[StoreState]:
        """The state with every commit made so far folded in, held still while in use."""
        with self._lock:
            yield self._refresh()

    @contextmanager
    def cached(self) -> Iterator[StoreState]:
        """The state as last folded, without looking for new commits (no I/O once started).

        For guesses that a commit's ``build`` re-checks anyway, such as which entries a
        save need not write.
        """
        with self._lock:
            yield self._state if self._state is not None else self._refresh()

    def refresh(self) -> int:
        """Fold in new commits; returns the position reached."""
        with self._lock:
            return self._refresh().position

    def _refresh(self) -> StoreState:
        if self._state is None:
            self._state = self._start()
        st = self._state
        for position, commit in self.log.after(st.position):
            self._fold(st, position, commit.ops)
        return st

    def _fold(self, st: StoreState, position: int, ops: Sequence[Op]) -> list[Op]:
        admitted = st.apply(position, ops)
        self._recent.append((position, tuple(ops)))
        return admitted

    def _start(self) -> StoreState:
        # A checkpoint is a shortcut: one that cannot be read or trusted sends the fold to
        # an older one, and at worst to the log itself, which is never deleted.
        for position in reversed(self.log.checkpoints()):
            try:
                data = self.log.read_checkpoint(position)
                if data is not None:
                    return checkpoint.decode(data, self.key)
            except (IntegrityError, StoreError) as exc:
                logger.warning("checkpoint %d of %s is unusable (%s); trying an older one", position,
                               self.log.backend.url, exc)
        if self._legacy is not None and self.log.read(1) is None:
            self._upgrade()
        return StoreState()

    def _upgrade(self) -> None:
        """Write a format-1 store's history (records in packs) as the log's first commit."""
        ops = self._legacy() if self._legacy is not None else ()
        if ops and self.log.create(1, self.log.encode(Commit(self.writer, tuple(ops), 1))):
            logger.warning("upgraded %s to the log format: %d events from its packs are commit 1",
                           self.log.backend.url, len(ops))

    def commits_after(self, position: int) -> Iterator[tuple[int, tuple[Op, ...]]]:
        """Every commit after ``position`` up to the folded one (from memory where it can)."""
        with self._lock:
            st = self._refresh()
            recent = list(self._recent) if self._recent and self._recent[0][0] <= position + 1 else None
            target = st.position
        if recent is not None:
            yield from ((p, ops) for p, ops in recent if position < p <= target)
            return
        for p, commit in self.log.after(position):
            if p > target:
                return
            yield p, commit.ops

    # -- writing ------------------------------------------------------------------------

    def commit(self, build: Build) -> tuple[int, tuple[Op, ...]]:
        """Commit what ``build`` makes of the current state; returns the position and the ops.

        ``build`` runs again after every lost race, on the state with the winner's commit
        folded in, so what it checks (the model's head, which entries exist) holds at the
        position its commit takes. It returns no operations to commit nothing.

        Raises:
            ConcurrentModificationError: lost :data:`MAX_ATTEMPTS` races in a row.
            Whatever ``build`` raises (nothing is committed then).
        """
        with self._lock:
            for _ in range(MAX_ATTEMPTS):
                st = self._refresh()
                ops = tuple(build(st))
                if not ops:
                    return st.position, ()
                position = st.position + 1
                data = self.log.encode(Commit(self.writer, ops, position))
                if self.log.create(position, data):
                    # Fold exactly what other processes will read back (records filled in).
                    ops = Commit.from_bytes(data).ops
                    if len(self._fold(st, position, ops)) != len(ops):
                        raise IntegrityError(f"commit {position} holds an operation its own state refuses; "
                                             "this is a bug in cas-repo: run `cas-repo fsck`")
                    if faults.ARMED:
                        faults.crash_point("after-commit")
                    if position % CHECKPOINT_EVERY == 0:
                        self._checkpoint(st)
                    return position, ops
        raise ConcurrentModificationError(f"gave up after losing {MAX_ATTEMPTS} races for the next log "
                                          "position; retry")

    def _checkpoint(self, st: StoreState) -> None:
        try:
            self.log.write_checkpoint(st.position, checkpoint.encode(st, self.key))
            for old in self.log.checkpoints()[:-CHECKPOINTS_KEPT]:
                self.log.delete_checkpoint(old)
        except Exception as exc:
            logger.warning("could not write checkpoint %d of %s: %s", st.position, self.log.backend.url, exc)

    def write_checkpoint(self) -> int:
        """Store a checkpoint of the current state now; returns its position (0: empty log)."""
        with self._lock:
            st = self._refresh()
            if st.position:
                self._checkpoint(st)
            return st.position
