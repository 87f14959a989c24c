"""The object backend port: the few primitives every storage kind implements.

A backend stores immutable blobs under keys produced by :mod:`.keys`. It knows nothing
of digests, packs or models; :class:`~cas_repo.objects.store.ObjectStore` builds
everything else on these primitives, and every backend passes the same contract tests
(``tests/objects/contract.py``).
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A listed blob: its key, size in bytes and last-modified time (UTC)."""

    key: str
    size: int
    mtime: datetime


class ObjectBackend(abc.ABC):
    """Immutable blob storage.

    Contract: ``put`` publishes all of the bytes or none of them (readers never see a
    partial blob); putting a key that exists leaves its bytes alone (pack names carry a
    nonce, so that only happens when a put is retried). ``create`` is the one
    synchronisation primitive: exactly one of any number of concurrent creators of a key
    wins. "Not found" is ``ObjectNotFoundError``; any other failure is ``StoreError``.
    """

    #: Human-readable location, e.g. a folder or ``s3://bucket/prefix``.
    url: str
    #: Pack size this backend publishes best (an object store: one request per pack);
    #: None leaves it to the store.
    preferred_pack_size: int | None = None
    #: How many blobs the store may read at once (an object store: overlap round trips).
    read_concurrency: int = 1
    #: Whether :meth:`commit_turn` has turns to take (a folder); the ledger then catches
    #: up before taking one.
    takes_commit_turns: bool = False

    @abc.abstractmethod
    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        """Publish the concatenation of ``parts`` at ``key``; False if it already existed."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Publish ``data`` at ``key`` only if no blob is there; False if one already is.

        This is the store's one synchronisation primitive (the log's commits): among any
        number of processes or machines creating one key at once exactly one gets True,
        and a reader sees either nothing or the winner's whole bytes, never a mix. The
        blob is durable when this returns True.
        """

    def commit_turn(self) -> AbstractContextManager[object]:
        """A context in which this process takes its turn at creating log commits.

        Only a hint to spare racing writers wasted attempts (a folder: one process of the
        machine at a time); ``create`` stays the arbiter. Default: no turns.
        """
        return nullcontext()

    def get(self, key: str) -> bytes | None:
        """The whole blob at ``key``, or None if there is none (one request where possible)."""
        from ..errors import ObjectNotFoundError

        try:
            return self.read(key)
        except ObjectNotFoundError:
            return None

    @abc.abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; fewer only if the blob is shorter."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and mtime of ``key``."""

    @abc.abstractmethod
    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every blob whose key starts with ``prefix`` (and sorts after ``start_after``),
        in key order, streamed (bounded memory)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abc.abstractmethod
    def touch(self, key: str) -> None:
        """Refresh the mtime of ``key`` (gc's grace period counts from it)."""

    def exists(self, key: str) -> bool:
        from ..errors import ObjectNotFoundError

        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    # `builtins.list` below: inside the class, `list` names the method above.
    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> builtins.list[bytes]:
        """Several ``(offset, length)`` ranges of one blob (backends may batch them)."""
        return [self.read_range(key, o, n) for o, n in ranges]

    def read_ranges_into(self, key: str,
                         ranges: Sequence[tuple[int, Sequence[memoryview]]]) -> builtins.list[int]:
        """Fill each range's buffers, in order, with the blob's bytes from its offset.

        Returns the bytes filled per range (fewer only if the blob is shorter). Backends
        that can read into caller memory (``preadv``) override this to skip a copy.
        """
        filled: builtins.list[int] = []
        for (_offset, views), data in zip(ranges, self.read_ranges(key, [(o, sum(len(v) for v in vs))
                                                                          for o, vs in ranges])):
            pos = 0
            for v in views:
                n = min(len(v), len(data) - pos)
                v[:n] = data[pos : pos + n]
                pos += n
            filled.append(pos)
        return filled

    def prefetch(self, key: str, offset: int, length: int) -> None:  # noqa: B027 - optional hint
        """Hint that ``length`` bytes from ``offset`` of ``key`` are about to be read (a
        folder: start reading them from the disk now); may do nothing."""

    def read(self, key: str) -> bytes:
        """The whole blob."""
        return self.read_range(key, 0, self.stat(key).size)

    def list_incomplete(self) -> Iterator[ObjectInfo]:
        """Leftovers of interrupted writes (temp files no write in progress can be using);
        none where puts are atomic."""
        return iter(())

    def remove_incomplete(self, info: ObjectInfo) -> bool:
        """Delete one leftover reported by :meth:`list_incomplete`; False if it is gone, or a
        write has used it since it was listed (it is kept then)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional: a backend that holds nothing open keeps this no-op
        """Release connections or handles."""
