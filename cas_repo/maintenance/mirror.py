"""mirror: make a store (the target) a byte-identical replica of another's (the source's)
log, checkpoints and packs, incrementally, while the source takes writes and runs gc.

The algorithm; every step is idempotent (atomic puts, create-only commits), so a run
killed at any instant is simply run again, and several runs may fill one mirror at once:

0. **Leftovers.** Once per process, temp files of writes into the target that a killed
   run left behind (and no write in progress can be using) are removed.
1. **Where the mirror ends.** List the target's log (from its newest checkpoint on) for
   its newest commit ``e``. The source must hold the very same bytes at ``e``; otherwise
   something wrote into the mirror, or it mirrors another store: stop, copying nothing.
2. **The source's commits after ``e``**, each decoded (digest, seal, position) and linked
   to the chain before it, in batches.
3. **Packs first.** Every pack a batch's commits point into that the target lacks is read
   from the source, checked to hash to its name, and put. A pack the source no longer
   holds was deleted by gc after a later commit forgot it: that commit must be in the
   source's log (read on until it is found); the batch then runs through it, so that
   a reader of the mirror sees the same brief gap a reader of the source sees during
   gc. No such commit: the source is damaged; stop.
4. **Commits, in position order**, each created at its position. A position already
   taken must hold the same bytes (another mirror run made it); otherwise stop.
5. **Checkpoints** the source has at positions the target's log holds, each checked
   against its digest header; then the target's checkpoints the source no longer has
   are deleted.
6. **Packs the target's own log forgot** and the source no longer holds are deleted.
   Never a pack only because the source lacks it: another run may just have copied one
   the source's listing did not show yet. A forgotten pack the source still holds stays
   until a later run (``follow`` remembers it; ``full`` finds every one).
7. ``full`` (and a first run): both sides' packs are listed; every source pack the target
   lacks is copied, orphans included, and the target's forgotten packs the source lacks
   are deleted.

A mirror takes no writes of its own: nothing here commits, and the target's fold is
computed without leaving a checkpoint behind.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..digest import Digest
from ..errors import MirrorDivergedError, MirrorError, StoreError
from ..log.commit import GENESIS, Commit
from ..log.log import Log
from ..objects import ObjectBackend
from ..objects.keys import LOG, log_key, pack_key, parse_log_key
from ..sealing import StoreKey
from .common import ProgressFactory, no_progress, progress_bar
from .replica import (
    CheckpointSync,
    PackCopy,
    checkpoint_sizes,
    copy_pack,
    forgotten_by_log,
    forgotten_packs,
    named_packs,
    open_location,
    pack_names,
    parallel,
    sync_checkpoints,
)

# Commits read and created per batch: their packs are copied together, in parallel.
BATCH = 256
# Threads that copy packs: at least a few on a folder too, so that fsyncs overlap.
_MIN_WORKERS = 4
_DIVERGED = ("a mirror takes no writes of its own. Copy out anything written there that you need (`cas-repo copy`), "
             "then start a new mirror in an empty location, or delete this one and mirror again")


@dataclass(frozen=True, slots=True)
class MirrorReport:
    """What one mirror run did. ``start``/``end``: the target's log end before and after."""

    source: str
    target: str
    full: bool
    start: int
    end: int
    commits: int
    commit_bytes: int
    packs: int
    pack_bytes: int
    checkpoints: int
    checkpoint_bytes: int
    checkpoints_deleted: int
    packs_deleted: int
    forgotten_kept: int
    seconds: float
    refused: tuple[str, ...] = ()

    @property
    def copied(self) -> int:
        """Objects copied: commits, packs and checkpoints."""
        return self.commits + self.packs + self.checkpoints

    @property
    def bytes(self) -> int:
        return self.commit_bytes + self.pack_bytes + self.checkpoint_bytes


@dataclass
class _Tally:
    commits: int = 0
    commit_bytes: int = 0
    packs: int = 0
    pack_bytes: int = 0
    forgets: set[str] = field(default_factory=set)


class _SourceCommits:
    """The source's commits after a position, as stored, read in batches; re-listed on demand."""

    def __init__(self, log: Log, position: int, chain: str | None) -> None:
        self.log, self.position, self.chain = log, position, chain
        self.ended = False
        self._it: Any = None

    def take(self, n: int) -> list[tuple[int, bytes, Commit]]:
        """Up to ``n`` more commits; after the end was reached, the log is listed again."""
        out: list[tuple[int, bytes, Commit]] = []
        while len(out) < n:
            if self._it is None:
                self._it = self.log.stored_after(self.position, self.chain)
            try:
                p, data, commit, chain = next(self._it)
            except StopIteration:
                self._it, self.ended = None, True
                break
            self.position, self.chain = p, chain
            out.append((p, data, commit))
        return out


class Mirror:
    """Mirrors ``source`` into ``target`` (two backends); :meth:`run` once, or repeatedly to follow."""

    def __init__(self, source: ObjectBackend, target: ObjectBackend, key: StoreKey | None = None, *,
                 names: tuple[str, str] | None = None) -> None:
        """``names``: how reports and errors name the two stores (default: the backends' URLs)."""
        self.source, self.target = source, target
        self.names = names or (source.url, target.url)
        self.source_log, self.target_log = Log(source, key), Log(target, key)
        workers = max(source.read_concurrency, target.read_concurrency, _MIN_WORKERS)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cas-mirror")
        self._pending: set[str] = set()  # forgotten at the target, still held by the source
        self._tidied = False  # the target's abandoned temp files removed (once per process)
        self._last: tuple[int, dict[int, int]] | None = None  # end and source checkpoints, last run
        self._checked: tuple[int, str | None] | None = None  # a target end found equal to the source's

    def close(self) -> None:
        self._pool.shutdown()
        self.source.close()
        self.target.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one run ------------------------------------------------------------------------

    def run(self, *, full: bool = False, progress: ProgressFactory = no_progress,
            stop: threading.Event | None = None) -> MirrorReport:
        """Copy what the target lacks (see the module's steps); stops early, consistent, once ``stop`` is set.

        Raises:
            MirrorDivergedError: the target holds a commit the source does not (nothing more is copied).
            MirrorError: the source is damaged (a pack missing that no commit forgot) or holds no log.
            IntegrityError: an object from the source does not verify (nothing of it is copied).
        """
        began = time.monotonic()
        if not self._tidied:
            self._remove_abandoned_temps()
        start = self._target_end()
        chain = self._check_start(start)
        full = full or start == 0
        tally = _Tally()
        listed = (pack_names(self.source), pack_names(self.target)) if full else None
        present = set(listed[1]) if listed else set()
        stream = _SourceCommits(self.source_log, start, chain)
        end = start
        with progress_bar(progress, None, "mirror: commits") as bar:
            while not stream.ended and not (stop is not None and stop.is_set()):
                batch = stream.take(BATCH)
                if not batch:
                    break
                self._copy_packs(batch, stream, present, tally, listed=listed is not None)
                for p, data, commit in batch:
                    self._create(p, data)
                    tally.commits += 1
                    tally.commit_bytes += len(data)
                    tally.forgets |= forgotten_packs(commit)
                end = batch[-1][0]
                bar.advance(len(batch))
        self._checked = (end, stream.chain)
        if end == 0:
            raise MirrorError(f"{self.names[0]} holds no log commits: nothing to mirror (a store written by the "
                              "first release is upgraded the first time cas-repo opens it: open it once, e.g. "
                              "`cas-repo --repo SRC ls`, then mirror)")
        if listed:
            lacking = sorted(set(listed[0]) - present)
            for copy in parallel(self._pool, lambda p: copy_pack(self.source, self.target, p), lacking):
                self._count(copy, tally)
        # Checkpoints first: the fold of the target's log that a full run's deletions need
        # then starts from the newest one.
        ckpt = self._checkpoints(end, full)
        deleted, kept = self._delete_forgotten(tally.forgets, listed, whole_log=start == 0)
        return MirrorReport(*self.names, full, start, end, tally.commits, tally.commit_bytes,
                            tally.packs, tally.pack_bytes, len(ckpt.copied), ckpt.copied_bytes, len(ckpt.deleted),
                            deleted, kept, time.monotonic() - began, ckpt.refused)

    def _remove_abandoned_temps(self) -> None:
        """Remove what interrupted writes into the target left (a run killed mid-copy leaves a
        temp file beside a pack or commit on a folder): only files no write in progress can be
        using (:func:`cas_repo.objects.temps.abandoned`), so a concurrent run keeps its own."""
        for info in self.target.list_incomplete():
            self.target.remove_incomplete(info)
        self._tidied = True

    def _target_end(self) -> int:
        """The target's newest commit, listing from the last end seen or its newest checkpoint on."""
        hint = self._last[0] if self._last else max(checkpoint_sizes(self.target), default=0)
        if hint:
            listed = [p for i in self.target.list(LOG + "/", start_after=log_key(hint - 1) if hint > 1 else None)
                      if (p := parse_log_key(i.key)) is not None]
            if listed and listed[0] == hint:
                return listed[-1]
        return self.target_log.newest_listed()

    def _check_start(self, end: int) -> str | None:
        """The chain digest after the target's commit ``end``, which must be the source's, byte for byte."""
        if end == 0:
            return GENESIS
        if self._checked is not None and self._checked[0] == end:
            return self._checked[1]  # checked (or created) by the last run; commits are never rewritten
        theirs = self.source.get(log_key(end))
        if theirs is None or self.target.get(log_key(end)) != theirs:
            why = "which the source does not hold" if theirs is None else "which differs from the source's"
            raise MirrorDivergedError(f"the mirror {self.names[1]} holds log commit {end} {why} "
                                      f"({self.names[0]}): nothing was copied; {_DIVERGED}")
        return self.source_log.decode(end, theirs).chain_after(None)

    def _copy_packs(self, batch: list[tuple[int, bytes, Commit]], stream: _SourceCommits, present: set[str],
                    tally: _Tally, *, listed: bool) -> None:
        """Put every pack the batch's commits point into at the target; extends the batch through
        the commits that forgot packs the source no longer holds. ``present``: packs known to be
        at the target (``listed``: all of them as of a listing, so no need to ask about each)."""
        gone: dict[str, int] = {}
        done = 0
        while True:
            first: dict[str, int] = {}
            for p, _, commit in batch[done:]:
                for pack in named_packs(commit) - present:
                    first.setdefault(pack, p)
            done = len(batch)
            wanted = list(first)
            if wanted and not listed:
                held = dict(zip(wanted, parallel(self._pool, self._target_holds, wanted)))
                present |= {p for p, h in held.items() if h}
                wanted = [p for p in wanted if not held[p]]
            for copy in parallel(self._pool, lambda p: copy_pack(self.source, self.target, p), wanted):
                if copy.gone:
                    gone[copy.pack] = first[copy.pack]
                else:
                    self._count(copy, tally)
                    present.add(copy.pack)
            forgot: dict[str, int] = {}
            for p, _, commit in batch:
                for pack in forgotten_packs(commit):
                    forgot.setdefault(pack, p)
            missing = sorted(pack for pack, p in gone.items() if forgot.get(pack, 0) <= p)
            if not missing:
                return
            more = stream.take(BATCH)
            if not more:
                raise MirrorError(
                    f"pack {missing[0]} is named by log commit {gone[missing[0]]} of {self.names[0]} but is "
                    "missing there, and no later commit forgot it: the source is damaged. Nothing past commit "
                    f"{batch[0][0] - 1} was copied. Run `cas-repo fsck` on the source (`--repair-from` a good copy)")
            batch.extend(more)

    def _target_holds(self, pack: str) -> bool:
        return self.target.exists(_key(pack))

    def _count(self, copy: PackCopy, tally: _Tally) -> None:
        if copy.size:
            tally.packs += 1
            tally.pack_bytes += copy.size

    def _create(self, position: int, data: bytes) -> None:
        """Create commit ``position`` at the target; one already there must be these very bytes."""
        if self.target_log.create(position, data) or self.target.get(log_key(position)) == data:
            return
        raise MirrorDivergedError(f"the mirror {self.names[1]} already holds a different log commit {position} "
                                  f"than {self.names[0]}: something wrote into the mirror. Copying stopped "
                                  f"before it; {_DIVERGED}")

    def _delete_forgotten(self, forgets: set[str], listed: tuple[dict[str, int], dict[str, int]] | None, *,
                          whole_log: bool) -> tuple[int, int]:
        """Delete the target's packs its log forgot and the source no longer holds; (deleted, kept).

        ``forgets``: the packs the commits of this run forgot (``whole_log``: every commit of
        the log went through this run). A forgotten pack never comes back at the source (pack
        names carry a nonce), so one missing from a listing of the source is gone for good.
        """
        if listed is not None:
            source, target = listed
            forgotten = forgets if whole_log else forgotten_by_log(self.target_log)
            candidates = sorted((set(target) | forgets | self._pending) & forgotten)
            held = [(p in target, p in source) for p in candidates]
        else:
            candidates = sorted(forgets | self._pending)
            held = list(parallel(self._pool, lambda p: (self.target.exists(_key(p)), self.source.exists(_key(p))),
                                 candidates))
        self._pending = {p for p, (here, there) in zip(candidates, held) if here and there}
        doomed = [_key(p) for p, (here, there) in zip(candidates, held) if here and not there]
        for _ in parallel(self._pool, self.target.delete, doomed):
            pass
        return len(doomed), len(self._pending)

    def _checkpoints(self, end: int, full: bool) -> CheckpointSync:
        theirs = checkpoint_sizes(self.source)
        if not full and self._last == (end, theirs):
            return CheckpointSync()  # nothing changed on either side since the last run
        done = sync_checkpoints(self.source, self.target, end, theirs, compare=full)
        self._last = (end, theirs)
        return done


def _key(pack: str) -> str:
    return pack_key(Digest.from_hex(pack))


def _where(backend: ObjectBackend) -> tuple[str, str]:
    """What names a backend's place: a folder's real path, or an object store's endpoint and URL."""
    root = getattr(backend, "root", None)
    if root is not None:
        return "", os.path.realpath(root)
    config = getattr(backend, "config", None)
    return str(getattr(config, "endpoint", "") or ""), backend.url.rstrip("/")


def open_mirror(source: str | os.PathLike[str], target: str | os.PathLike[str], *, key: str | bytes | None = None,
                source_options: dict[str, Any] | None = None,
                target_options: dict[str, Any] | None = None) -> Mirror:
    """A :class:`Mirror` between two store locations (folders or ``s3://`` URLs); ``key`` as for ``ModelStore``."""
    src = open_location(source, source_options, source=True)
    try:
        dst = open_location(target, target_options, source=False)
    except BaseException:
        src.close()
        raise
    if _where(src) == _where(dst):
        src.close()
        dst.close()
        raise MirrorError(f"{os.fspath(source)} and {os.fspath(target)} are the same store: a mirror must be "
                          "another folder or bucket prefix")
    return Mirror(src, dst, StoreKey.configured(key), names=(os.fspath(source), os.fspath(target)))


def mirror(source: str | os.PathLike[str], target: str | os.PathLike[str], *, full: bool = False,
           key: str | bytes | None = None, source_options: dict[str, Any] | None = None,
           target_options: dict[str, Any] | None = None, progress: ProgressFactory = no_progress) -> MirrorReport:
    """One mirror run from ``source`` into ``target`` (see the module's steps)."""
    with open_mirror(source, target, key=key, source_options=source_options, target_options=target_options) as m:
        return m.run(full=full, progress=progress)


def follow(m: Mirror, stop: threading.Event, on_run: Callable[[MirrorReport], None], *, interval: float = 0.5,
           full: bool = False, on_error: Callable[[Exception], None] | None = None) -> None:
    """Mirror again every ``interval`` seconds until ``stop`` is set; ``on_run`` gets each run's report.

    A store that does not answer (a ``StoreError``) is retried at the next poll when
    ``on_error`` is given (it is told); damage and divergence always stop.
    """
    first = True
    while not stop.is_set():
        try:
            on_run(m.run(full=full and first, stop=stop))
            first = False
        except StoreError as exc:
            if on_error is None:
                raise
            on_error(exc)
        stop.wait(interval)
