"""The event log in the object store: create-only commits at positions 1, 2, 3…

Position ``p + 1`` can only be created by a writer that has read position ``p``: the
backend's ``create`` lets exactly one of any number of racing writers win a key, so the
log is one total order of commits, decided by the object store itself, with no lock
service. A crash cannot leave a partial commit (``create`` publishes all or nothing)
nor a gap (nothing is reserved before it is written).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from ..digest import hash_bytes
from ..errors import IntegrityError
from ..objects.backend import ObjectBackend
from ..objects.keys import CHECKPOINTS, LOG, checkpoint_key, log_key, parse_checkpoint_key, parse_log_key
from ..sealing import StoreKey
from .commit import Commit

# How many commits past the last one a catch-up fetches at once from a backend that
# overlaps requests (an object store); a folder is read one commit at a time.
_FETCH_BATCH = 64


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
        raw = commit.to_bytes()
        return self.key.seal(raw) if self.key else raw

    def decode(self, position: int, data: bytes) -> Commit:
        try:
            if self.key:
                self.key.check(data)
            commit = Commit.from_bytes(data)
            if commit.position != position:
                raise IntegrityError(f"it says it is commit {commit.position}: a commit was copied over "
                                     "another one")
            return commit
        except IntegrityError as exc:
            raise IntegrityError(f"log commit {position} ({log_key(position)}) is unreadable: {exc.message}",
                                 expected=exc.expected, actual=exc.actual) from exc

    def create(self, position: int, data: bytes) -> bool:
        """Publish encoded commit bytes at ``position``; False if another writer got there first."""
        return self.backend.create(log_key(position), data)

    def read(self, position: int) -> Commit | None:
        data = self.backend.get(log_key(position))
        return None if data is None else self.decode(position, data)

    def after(self, position: int) -> Iterator[tuple[int, Commit]]:
        """Every commit after ``position``, in order, up to the newest one there is now."""
        if self.backend.read_concurrency <= 1:
            while True:
                commit = self.read(position + 1)
                if commit is None:
                    return
                position += 1
                yield position, commit
        start = log_key(position) if position else None
        listed = (parse_log_key(i.key) for i in self.backend.list(LOG + "/", start_after=start))
        with ThreadPoolExecutor(max_workers=self.backend.read_concurrency, thread_name_prefix="cas-log") as pool:
            batch: list[int] = []
            for p in listed:
                if p is None:
                    continue
                if p != position + len(batch) + 1:
                    break  # nothing listed past a gap can be a commit yet
                batch.append(p)
                if len(batch) == _FETCH_BATCH:
                    yield from self._fetch(pool, batch)
                    position, batch = batch[-1], []
            yield from self._fetch(pool, batch)

    def _fetch(self, pool: ThreadPoolExecutor, positions: list[int]) -> Iterator[tuple[int, Commit]]:
        for p, data in zip(positions, pool.map(lambda q: self.backend.get(log_key(q)), positions)):
            if data is None:
                raise IntegrityError(f"log commit {p} was listed but cannot be read; it was deleted, "
                                     "which must never happen: run `cas-repo fsck`")
            yield p, self.decode(p, data)

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
