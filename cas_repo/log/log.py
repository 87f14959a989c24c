"""The event log in the object store: create-only commits at positions 1, 2, 3…

Position ``p + 1`` can only be created by a writer that has read position ``p``: the
backend's ``create`` lets exactly one of any number of racing writers win a key, so the
log is one total order of commits, decided by the object store itself, with no lock
service. A crash cannot leave a partial commit (``create`` publishes all or nothing)
nor a gap (nothing is reserved before it is written).

Every commit read is checked before it is used: its digest, its position, its seal in a
keyed store, and its link to the commits before it. A gap or a cut end found on the
way is damage, never the end of the log (:meth:`Log.after`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

from ..digest import hash_bytes
from ..errors import IntegrityError, LogDamagedError
from ..objects.backend import ObjectBackend
from ..objects.keys import CHECKPOINTS, LOG, checkpoint_key, log_key, parse_checkpoint_key, parse_log_key
from ..sealing import StoreKey
from .commit import Commit, body_json, split_digest_line, with_digest_line
from .state import StoreState

# Reading the commits after a position from a backend that overlaps requests (an object
# store): up to this many GETs in flight, kept full while the commits before them are
# checked and folded, from a pool of this many threads per unit of the backend's
# `read_concurrency`. A commit is ~1 KB, so each GET costs one round trip and the rate
# is how many overlap: with 20 ms added to each GET from SeaweedFS on loopback, 1,200
# commits took 3.7 s fetched 64 at a time by 8 threads (the batch waited for its slowest
# GET, the fold for the whole batch), 1.0 s with 32 threads kept busy, 0.76 s with 64.
# A folder is read one commit at a time.
_FETCH_AHEAD = 256
_THREADS_PER_SLOT = 8
_RESTORE = "restore it from a copy of the store (`cas-repo fsck --repair-from COPY`)"


def damaged(position: int, reason: str, *, expected: str | None = None,
            actual: str | None = None) -> LogDamagedError:
    """The error for a commit no reader may fold: ``reason``, and what to do."""
    return LogDamagedError(position, f"log commit {position} ({log_key(position)}) {reason}. Nothing from it on is "
                           f"used: run `cas-repo fsck` and {_RESTORE}", reason=reason, expected=expected,
                           actual=actual)


def missing_error(position: int, last: int) -> LogDamagedError:
    return LogDamagedError(position, f"log commit {position} ({log_key(position)}) is missing, but commits after it "
                           f"exist (up to {last}): it was deleted or lost. No reader folds past it and no writer "
                           f"commits until it is back: run `cas-repo fsck`, then {_RESTORE}",
                           reason=f"missing below commits that exist (up to {last})")


def cut_error(position: int) -> LogDamagedError:
    return LogDamagedError(position, f"log commit {position} ({log_key(position)}), which this process already "
                           "read, is gone: the log was cut (commits deleted, or an older copy of the store put back "
                           f"over it). Nothing was committed. Run `cas-repo fsck` and {_RESTORE}; if the older "
                           "state is the one you want, restart this process", reason="gone after it was read")


class Log:
    """Reads and creates commits and checkpoints over a backend."""

    def __init__(self, backend: ObjectBackend, key: StoreKey | None = None) -> None:
        self.backend = backend
        self.key = key
        self._store_id = ""

    def store_id(self) -> str:
        """The store's identity: the digest of its first commit ("" while the log is empty).

        A catalog index records it, so an index of another store (or of this one before
        it was recreated) is recognised and rebuilt.
        """
        if not self._store_id:
            data = self.backend.get(log_key(1))
            self._store_id = hash_bytes(data).hex[:32] if data else ""
        return self._store_id

    # -- commits ------------------------------------------------------------------------

    def encode(self, commit: Commit) -> bytes:
        """The bytes ``commit`` is stored as: its body, sealed in a keyed store, and its digest line."""
        return self.prepare(commit)[0]

    def prepare(self, commit: Commit) -> tuple[bytes, Commit]:
        """The bytes ``commit`` is stored as, and the commit as every reader will parse them
        (event ids filled in, its digest), hashing the body once."""
        if commit.prev is None:
            raise ValueError("a new commit needs its link to the one before it (prev)")
        body = body_json(commit.writer, commit.ops, commit.position, commit.prev, commit.author or "")
        if self.key:
            body = self.key.seal(body)
        digest = hash_bytes(body).hex
        return with_digest_line(body, digest), Commit.parse(body, digest, legacy=False)

    def decode(self, position: int, data: bytes) -> Commit:
        """The commit stored at ``position``, every byte of it checked.

        Raises:
            LogDamagedError: damaged, unsealed in a keyed store, or stored at another position.
        """
        try:
            split = split_digest_line(bytes(data))
            body, digest = (bytes(data), hash_bytes(data).hex) if split is None else split
            if self.key:
                self.key.check(body)
            commit = Commit.parse(body, digest, legacy=split is None)
            if commit.position != position:
                raise IntegrityError(f"it says it is commit {commit.position}: a commit was copied over "
                                     "another one")
            return commit
        except IntegrityError as exc:
            raise damaged(position, f"is unreadable: {exc.message}", expected=exc.expected,
                          actual=exc.actual) from exc

    @staticmethod
    def link(before: str | None, position: int, commit: Commit) -> str | None:
        """The chain digest after ``commit``, checking that it follows ``before`` (None: not known).

        Raises:
            LogDamagedError: its link names another chain than the one before it.
        """
        if commit.prev is not None and before is not None and commit.prev != before:
            raise damaged(position, f"does not follow commit {position - 1}: its link to the commits before it "
                          "does not match them, so an earlier commit was changed, removed or replaced, or commit "
                          f"{position} comes from another store", expected=before, actual=commit.prev)
        return commit.chain_after(before)

    def check_anchor(self, position: int, st: StoreState) -> None:
        """Use a checkpoint's state ``st`` only where the log holds the commit it was taken
        at, with the chain digest it records: so it can neither move a process past the
        log's end nor stand for another store's history (one read of that commit).

        Raises:
            IntegrityError: it is not this log's state at ``position``.
        """
        if st.position != position:
            raise IntegrityError(f"it says it is the state as of commit {st.position}")
        commit = self.read(position)
        if commit is None:
            raise IntegrityError(f"the log holds no commit {position}: it is past the log's end")
        if commit.chain_after(st.chain_before) != st.chain or commit.prev not in (None, st.chain_before):
            raise IntegrityError(f"it was not taken from this log's commit {position} (the chain digests differ)")

    def create(self, position: int, data: bytes) -> bool:
        """Publish encoded commit bytes at ``position``; False if another writer got there first."""
        return self.backend.create(log_key(position), data)

    def read(self, position: int) -> Commit | None:
        data = self.backend.get(log_key(position))
        return None if data is None else self.decode(position, data)

    def holds(self, position: int) -> bool:
        return self.backend.exists(log_key(position))

    def after(self, position: int, chain: str | None) -> Iterator[tuple[int, Commit, str | None]]:
        """Every commit after ``position``, in order, with the chain digest after it (see :meth:`stored_after`)."""
        return ((p, commit, after) for p, _data, commit, after in self.stored_after(position, chain))

    def stored_after(self, position: int, chain: str | None) -> Iterator[tuple[int, bytes, Commit, str | None]]:
        """Every commit after ``position``, in order, up to the newest one there is now, as
        stored (its bytes) and decoded, each with the chain digest after it; ``chain`` is
        the one at ``position``.

        Checks on the way that the log still holds ``position`` (a process that folded it
        must not build on a cut log) and that no commit exists past the end it finds (a
        missing commit below existing ones is damage, not the end). On an object store
        both come from the LIST that finds the new commits, which starts one key earlier;
        on a folder they cost a ``stat`` each.

        Raises:
            LogDamagedError: a commit is damaged or does not follow the one before it, one
                is missing below others, or ``position`` is gone.
        """
        if self.backend.read_concurrency <= 1:
            start = position
            while True:
                data = self.backend.get(log_key(position + 1))
                if data is None:
                    if not self.holds(position + 2):
                        break
                    data = self.backend.get(log_key(position + 1))  # created by now, or missing below
                    if data is None:
                        raise missing_error(position + 1, position + 2)
                position += 1
                commit = self.decode(position, data)
                chain = self.link(chain, position, commit)
                yield position, data, commit, chain
            if position == start and start and not self.holds(start):
                raise cut_error(start)
            return
        start_after = log_key(position - 1) if position > 1 else None
        listed = [p for p in (parse_log_key(i.key) for i in self.backend.list(LOG + "/", start_after=start_after))
                  if p is not None]
        if position and (not listed or listed[0] != position) and not self.holds(position):
            raise cut_error(position)
        listed = [p for p in listed if p > position]
        for i, p in enumerate(listed):
            if p != position + i + 1:
                if self.backend.get(log_key(position + i + 1)) is None:
                    raise missing_error(position + i + 1, listed[-1])
                listed = listed[:i]  # created since the listing: the next refresh takes it
                break
        for p, data in self._fetch(listed):
            commit = self.decode(p, data)
            chain = self.link(chain, p, commit)
            yield p, data, commit, chain

    def _fetch(self, positions: list[int]) -> Iterator[tuple[int, bytes]]:
        """The stored bytes of each of ``positions``, in order, with up to :data:`_FETCH_AHEAD`
        GETs in flight while the caller works on the ones before them."""
        if not positions:
            return
        workers = min(self.backend.read_concurrency * _THREADS_PER_SLOT, len(positions))
        pending: deque[tuple[int, Future[bytes | None]]] = deque()
        ahead = iter(positions)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cas-log") as pool:
            try:
                for p in islice(ahead, _FETCH_AHEAD):
                    pending.append((p, pool.submit(self.backend.get, log_key(p))))
                while pending:
                    p, got = pending.popleft()
                    following = next(ahead, None)
                    if following is not None:
                        pending.append((following, pool.submit(self.backend.get, log_key(following))))
                    data = got.result()
                    if data is None:
                        raise missing_error(p, positions[-1])
                    yield p, data
            finally:
                # A caller that stops early (damage, or it had enough) does not wait for
                # the reads it will never use.
                for _, f in pending:
                    f.cancel()

    def newest_listed(self) -> int:
        """The highest position a listing of the log shows (0: none)."""
        last = 0
        for info in self.backend.list(LOG + "/"):
            p = parse_log_key(info.key)
            if p is not None:
                last = max(last, p)
        return last

    # -- checkpoints ----------------------------------------------------------------------

    def checkpoints(self) -> list[int]:
        """Positions of the stored checkpoints, oldest first."""
        out = [parse_checkpoint_key(i.key) for i in self.backend.list(CHECKPOINTS + "/")]
        return sorted(p for p in out if p is not None)

    def read_checkpoint(self, position: int) -> bytes | None:
        return self.backend.get(checkpoint_key(position))

    def write_checkpoint(self, position: int, data: bytes) -> bool:
        return self.backend.create(checkpoint_key(position), data)

    def delete_checkpoint(self, position: int) -> None:
        self.backend.delete(checkpoint_key(position))
