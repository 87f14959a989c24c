"""The ledger: a store's log folded into a current :class:`StoreState`, and the commit loop.

Reads fold in whatever commits appeared since the last look (on a folder: one failed
``open`` when there are none; on S3: one LIST), so an acknowledged commit of any
process or machine is seen by every later call. A commit is optimistic: build the
operations from the state at position ``p``, create ``p + 1``; if another writer got
there first, fold its commit in and build again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from .. import faults
from ..errors import (
    CommitOutcomeUnknownError,
    ConcurrentModificationError,
    IntegrityError,
    OutcomeUnknownError,
)
from ..objects.backend import ObjectBackend
from ..objects.keys import log_key
from ..sealing import StoreKey
from . import checkpoint
from .commit import Commit, author_name, new_writer_id
from .log import Log, damaged, missing_error
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
# After a commit's answer is lost: how long its writer keeps reading the position back
# (with backoff) to learn whether the store recorded it, before saying it cannot know.
CONFIRM_SECONDS = 30.0

Build = Callable[[StoreState], Sequence[Op]]


class Ledger:
    """One store's log and its fold (thread-safe; one per open store)."""

    def __init__(self, backend: ObjectBackend, key: StoreKey | None = None, *,
                 legacy: Callable[[], Sequence[Op]] | None = None) -> None:
        self.log = Log(backend, key)
        self.key = key
        self.writer = new_writer_id()
        self.author = author_name()
        self._legacy = legacy
        self._state: StoreState | None = None
        self._recent: deque[tuple[int, Commit]] = deque(maxlen=_RECENT)
        self._lock = threading.RLock()
        self._end_listed = backend.read_concurrency > 1  # an object store's refresh lists past the end

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
        starting = self._state is None
        if self._state is None:
            self._state = self._start()
        st = self._state
        folded = 0
        for position, commit, chain in self.log.after(st.position, st.chain):
            self._fold(st, position, commit, chain)
            folded += 1
        if starting and folded >= CHECKPOINT_EVERY:
            # No usable checkpoint spared this start-up its replay (an older store's, or a
            # damaged one): leave one, so that the next process does not replay it all again.
            self._checkpoint(st, quiet=True)
        return st

    def _fold(self, st: StoreState, position: int, commit: Commit, chain: str | None) -> list[Op]:
        if chain is None:
            raise IntegrityError("the ledger lost track of the log's chain; this is a bug in cas-repo")
        admitted = st.apply(position, commit.ops, chain)
        self._recent.append((position, commit))
        return admitted

    def _start(self) -> StoreState:
        # A checkpoint is a shortcut: one that cannot be read or trusted sends the fold to
        # an older one, and at worst to the log itself, which is never deleted.
        for position in reversed(self.log.checkpoints()):
            try:
                data = self.log.read_checkpoint(position)
                if data is None:
                    continue
                st = checkpoint.decode(data, self.key)
                self.log.check_anchor(position, st)
                return st
            except Exception as exc:  # whatever is wrong with it (even MemoryError), it is skipped
                logger.warning("checkpoint %d of %s is unusable (%s); trying an older one, or the log itself",
                               position, self.log.backend.url, exc)
        if self._legacy is not None and self.log.read(1) is None:
            self._upgrade()
        return StoreState()

    def _upgrade(self) -> None:
        """Write a format-1 store's history (records in packs) as the log's first commit."""
        ops = self._legacy() if self._legacy is not None else ()
        if ops and self.log.create(1, self.log.encode(Commit(self.writer, tuple(ops), 1, prev="",
                                                             author=self.author))):
            logger.warning("upgraded %s to the log format: %d events from its packs are commit 1",
                           self.log.backend.url, len(ops))

    def commits_after(self, position: int) -> Iterator[tuple[int, tuple[Op, ...]]]:
        """The operations of every commit after ``position`` up to the folded one."""
        return ((p, c.ops) for p, c in self.log_after(position))

    def log_after(self, position: int) -> Iterator[tuple[int, Commit]]:
        """Every commit after ``position`` up to the folded one (from memory where it can)."""
        with self._lock:
            st = self._refresh()
            recent = list(self._recent) if self._recent and self._recent[0][0] <= position + 1 else None
            target, chain = st.position, st.chain
        if recent is not None:
            yield from ((p, c) for p, c in recent if position < p <= target)
            return
        # Read back from the store: each commit's link checks the one before it, and the
        # last one's chain digest must be the one this process folded.
        for p, commit, after in self.log.after(position, None):
            if p == target and after is not None and after != chain:
                raise damaged(p, "changed after this process read it", expected=chain, actual=after)
            if p > target:
                return
            yield p, commit

    # -- writing ------------------------------------------------------------------------

    def commit(self, build: Build) -> tuple[int, tuple[Op, ...]]:
        """Commit what ``build`` makes of the current state; returns the position and the ops.

        ``build`` runs again after every lost race, on the state with the winner's commit
        folded in, so what it checks (the model's head, which entries exist) holds at the
        position its commit takes. It returns no operations to commit nothing.

        A writer never creates a position below one that exists, nor builds on a log that
        lost the commit it folded last (see :meth:`Log.after`).

        Raises:
            ConcurrentModificationError: lost :data:`MAX_ATTEMPTS` races in a row.
            LogDamagedError: the log is damaged where this commit would go (nothing committed).
            CommitOutcomeUnknownError: the store could not say whether it recorded the commit.
            Whatever ``build`` raises (nothing is committed then).
        """
        with self._lock:
            # Catch up first, then take the machine's turn (see objects/turn.py): with the
            # turn nearly every attempt wins, where on a folder a lost race has paid a
            # commit's write and fsync for nothing; and a turn spent folding others'
            # commits would make every other writer wait for it.
            if self.log.backend.takes_commit_turns:
                self._refresh()  # on a folder one failed open when there is nothing new
            with self.log.backend.commit_turn():
                return self._commit(build)

    def _commit(self, build: Build) -> tuple[int, tuple[Op, ...]]:
        """The commit loop of :meth:`commit` (holding the ledger's lock, and the turn if any)."""
        for _ in range(MAX_ATTEMPTS):
            st = self._refresh()
            if not self._end_listed:
                self._check_end(st)
            ops = tuple(build(st))
            if not ops:
                return st.position, ()
            position = st.position + 1
            data, commit = self.log.prepare(Commit(self.writer, ops, position, prev=st.chain,
                                                   author=self.author))
            if self._create(position, data, ops):
                # Fold exactly what other processes will read back (records filled in).
                if len(self._fold(st, position, commit, commit.chain_after(st.chain))) != len(ops):
                    raise IntegrityError(f"commit {position} holds an operation its own state refuses; "
                                         "this is a bug in cas-repo: run `cas-repo fsck`")
                if faults.ARMED:
                    faults.crash_point("after-commit")
                if position % CHECKPOINT_EVERY == 0:
                    self._checkpoint(st)
                return position, ops
        raise ConcurrentModificationError(f"gave up after losing {MAX_ATTEMPTS} races for the next log "
                                          "position; retry")

    def _check_end(self, st: StoreState) -> None:
        """Once per process on a folder: list the log, so that a commit missing below
        existing ones (a deleted file) is found before this writer would fill its place.
        A folder's refresh probes one position past the end; this finds longer gaps."""
        newest = self.log.newest_listed()
        if newest > st.position:
            self._refresh()  # commits made since the refresh; a gap stops it
            if newest > st.position:
                raise missing_error(st.position + 1, newest)
        self._end_listed = True

    def _create(self, position: int, data: bytes, ops: Sequence[Op]) -> bool:
        """Create ``data`` at ``position``; when the answer is lost, read it back until the
        store says whose commit is there (with backoff) rather than guess."""
        try:
            return self.log.create(position, data)
        except OutcomeUnknownError as exc:
            first = exc
        deadline = time.monotonic() + CONFIRM_SECONDS
        delay = 0.1
        while True:
            try:
                found = self.log.backend.get(log_key(position))
                if found is None:
                    if self.log.create(position, data):  # the same bytes: at most one copy lands
                        return True
                    found = self.log.backend.get(log_key(position))
                if found is not None:
                    return found == data  # our own bytes (unique to this writer), or another's commit
            except OutcomeUnknownError:
                pass
            except Exception as exc:  # any failure to read back keeps the outcome unknown
                logger.info("reading back commit %d of %s failed: %s", position, self.log.backend.url, exc)
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 4.0)
        models = sorted({m for o in ops if isinstance(m := getattr(o, "model_id", None), str)})
        check = (f"check `cas-repo log {models[0]}`" if models
                 else "check the newest commits (`cas-repo fsck` reads the log)")
        raise CommitOutcomeUnknownError(position, f"the store at {self.log.backend.url} did not answer whether it "
                                        f"recorded commit {position} ({first}). The change may be recorded: "
                                        f"{check} before retrying") from first

    def _checkpoint(self, st: StoreState, *, quiet: bool = False) -> None:
        try:
            self.log.write_checkpoint(st.position, checkpoint.encode(st, self.key))
            for old in self.log.checkpoints()[:-CHECKPOINTS_KEPT]:
                self.log.delete_checkpoint(old)
        except Exception as exc:  # a checkpoint is a shortcut; failing to leave one loses nothing
            (logger.info if quiet else logger.warning)("could not write checkpoint %d of %s: %s", st.position,
                                                       self.log.backend.url, exc)

    def write_checkpoint(self) -> int:
        """Store a checkpoint of the current state now; returns its position (0: empty log)."""
        with self._lock:
            st = self._refresh()
            if st.position:
                self._checkpoint(st)
            return st.position
