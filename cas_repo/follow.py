"""Following the log: every admitted operation after a position, as a :class:`Change`, as it lands.

1. Start after ``after`` (None: the position folded now, so only what comes next).
2. Fold in the commits made since the last look (one request: a failed ``open`` on a
   folder, one LIST on S3) and turn each admitted operation of each into a Change, in
   log order; operations the fold refused are skipped, as every reader skips them.
3. Yield those the filter lets through; sleep ``poll`` seconds and look again, until
   ``stop`` is set or ``idle_timeout`` seconds pass with no new commit.

A Change's ``id`` (``store:position:index``) names one operation of one store for good,
so a consumer that may see a change twice (after a crash) can recognise it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from .errors import InvalidWatchFilterError
from .log.commit import Commit
from .log.ledger import Ledger
from .log.ops import (
    AdoptEntries,
    AliasMove,
    EventOp,
    ForgetPacks,
    MarkOp,
    MetricsOp,
    MoveEntries,
    Op,
    PolicyOp,
    SaveOp,
)

EVENT_FORMAT = "cas-repo/event/1"
#: Every kind a Change can have, in the order the docs list them.
KINDS = ("save", "rollback", "delete", "undelete", "tag", "retire", "restore", "purge", "metrics", "alias", "gc",
         "adopt", "policy")


@dataclass(frozen=True, slots=True)
class Change:
    """One admitted operation of the log, as a consumer of changes sees it.

    ``index`` is the operation's place in its commit: the operations of one commit share
    a ``position``. ``version`` is the version made or acted on (for an alias move: where
    the alias points now, None once removed; ``previous``: where it pointed before, None
    when new). ``author`` is None in a commit written before authors were recorded.
    """

    id: str
    position: int
    index: int
    kind: str
    model_id: str | None
    version: int | None
    alias: str | None
    previous: int | None
    at: datetime
    author: str | None
    host: str
    writer: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object (the schema in docs/watch.md)."""
        return {"format": EVENT_FORMAT, "id": self.id, "position": self.position, "index": self.index,
                "kind": self.kind, "model_id": self.model_id, "version": self.version, "alias": self.alias,
                "previous": self.previous, "at": self.at.isoformat(), "author": self.author, "host": self.host,
                "writer": self.writer, "details": self.details}


def change_of(store_id: str, position: int, index: int, op: Op, commit: Commit) -> Change:
    """The Change that operation ``index`` of the commit at ``position`` makes (one branch per operation)."""
    def made(kind: str, model_id: str | None = None, version: int | None = None, details: dict[str, Any] | None = None,
             alias: str | None = None, previous: int | None = None) -> Change:
        return Change(f"{store_id}:{position}:{index}", position, index, kind, model_id, version, alias, previous,
                      op.at, commit.author, commit.writer.partition("/")[0], commit.writer, details or {})

    if isinstance(op, SaveOp):
        details: dict[str, Any] = {
            "record": op.event_id, "manifest": op.manifest, "experiment_name": op.experiment_name,
            "model_type": op.model_type, "metrics": dict(op.metrics), "tags": dict(op.tags),
            "parents": [f"{m}@{v}" for m, v in op.parents], "logical_size": op.logical_size,
            "new_bytes": op.new_bytes}
        if op.kind == "rollback":
            details["rollback_of"] = op.rollback_of
        return made(op.kind, op.model_id, op.version, details)
    if isinstance(op, EventOp):
        return made(op.kind, op.model_id, op.version,
                    {"record": op.event_id, **({"tags": dict(op.set_tags)} if op.kind == "tag" else {})})
    if isinstance(op, MarkOp):
        freed = {} if op.kind != "purge" else {"logical_size": op.logical_size, "new_bytes": op.new_bytes}
        return made(op.kind, op.model_id, op.version, {"record": op.event_id, **freed})
    if isinstance(op, MetricsOp):
        return made("metrics", op.model_id, op.version, {"record": op.event_id, "metrics": dict(op.metrics)})
    if isinstance(op, AliasMove):
        return made("alias", op.model_id, op.version, {"removed": op.version is None}, op.alias, op.previous)
    if isinstance(op, ForgetPacks):
        return made("gc", details={"action": "forget", "packs_forgotten": len(op.packs)})
    if isinstance(op, MoveEntries):
        return made("gc", details={"action": "move", "packs_forgotten": len(op.sources),
                                   "entries_moved": len(op.locations), "packs_written": len(op.new_packs)})
    if isinstance(op, AdoptEntries):
        return made("adopt", details={"entries": len(op.locations), "packs": len(op.new_packs),
                                      "manifests": len(op.manifests)})
    if isinstance(op, PolicyOp):
        # ``previous``: the log position of the policy this one replaced (None: the first).
        return made("policy", details={"policy": op.policy, "cleared": op.cleared}, previous=op.previous)
    raise TypeError(f"not a log operation: {type(op).__name__}")


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    return () if value is None else (value,) if isinstance(value, str) else tuple(value)


def _matches(name: str | None, patterns: tuple[str, ...]) -> bool:
    return name is not None and any(fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    """Which changes a follower wants: every filter given must match (an empty one matches all).

    ``models`` and ``aliases`` are exact names or glob patterns (``lgbm_*``); ``aliases``
    lets through the moves of those aliases only.
    """

    models: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()

    @classmethod
    def of(cls, models: str | Iterable[str] | None = None, kinds: str | Iterable[str] | None = None,
           aliases: str | Iterable[str] | None = None) -> ChangeFilter:
        """A filter from what a caller gave (one name or several).

        Raises:
            InvalidWatchFilterError: a kind that no change has.
        """
        wanted = frozenset(_names(kinds))
        unknown = sorted(wanted - set(KINDS))
        if unknown:
            raise InvalidWatchFilterError(f"unknown change kind {', '.join(map(repr, unknown))}; "
                                          f"the kinds are {', '.join(KINDS)}")
        return cls(_names(models), wanted, _names(aliases))

    def matches(self, change: Change) -> bool:
        return ((not self.models or _matches(change.model_id, self.models))
                and (not self.kinds or change.kind in self.kinds)
                and (not self.aliases or (change.kind == "alias" and _matches(change.alias, self.aliases))))


def start_position(ledger: Ledger, after: int | None) -> int:
    """Where following starts: ``after``, checked against the log, or (None) the position folded now.

    Raises:
        InvalidWatchFilterError: ``after`` is negative or past the log's end.
    """
    end = ledger.refresh()
    if after is None:
        return end
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidWatchFilterError(f"a log position is an integer >= 0, got {after!r:.40}")
    if after > end:
        raise InvalidWatchFilterError(f"position {after} is past the log's end ({end}); follow from "
                                      f"{end} or less, or from None (the end) to see only new changes")
    return after


def changes(ledger: Ledger, after: int | None = None, *, wanted: ChangeFilter | None = None, poll: float = 0.5,
            stop: threading.Event | None = None, idle_timeout: float | None = None) -> Iterator[Change]:
    """Every admitted operation after ``after`` that ``wanted`` lets through, in log order, then
    each new one as it lands, until ``stop`` is set or ``idle_timeout`` passes with no new commit.

    The start is checked (and, for None, taken) now, not at the first ``next()``.

    Raises:
        InvalidWatchFilterError: ``poll`` is not > 0, or ``after`` is negative or past the log's end.
    """
    looks = with_progress(ledger, after, wanted=wanted, poll=poll, stop=stop, idle_timeout=idle_timeout)
    return (c for c in looks if isinstance(c, Change))


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Every commit up to ``position`` has been looked at (what the filter wanted was yielded before)."""

    position: int


def with_progress(ledger: Ledger, after: int | None = None, *, wanted: ChangeFilter | None = None,
                  poll: float = 0.5, stop: threading.Event | None = None,
                  idle_timeout: float | None = None) -> Iterator[Change | CaughtUp]:
    """:func:`changes`, and a :class:`CaughtUp` after each look that read new commits, so a
    consumer with narrow filters can record how far it has read (a watch cursor does)."""
    if not (isinstance(poll, (int, float)) and poll > 0):
        raise InvalidWatchFilterError(f"poll is a number of seconds > 0, got {poll!r:.40}")
    return _follow(ledger, start_position(ledger, after), wanted or ChangeFilter(), poll, stop or threading.Event(),
                   idle_timeout)


def _follow(ledger: Ledger, position: int, wanted: ChangeFilter, poll: float, stop: threading.Event,
            idle_timeout: float | None) -> Iterator[Change | CaughtUp]:
    store_id = ""
    quiet_since = time.monotonic()
    while not stop.is_set():
        before = position
        refused: set[tuple[int, int]] | None = None
        for p, commit in ledger.log_after(position):
            if refused is None:
                # log_after folded at least up to p first; the refused list only grows.
                with ledger.cached() as st:
                    refused = {r for r in st.refused if r[0] > before}
                store_id = store_id or ledger.log.store_id()
            for i, op in enumerate(commit.ops):
                if (p, i) in refused:
                    continue
                change = change_of(store_id, p, i, op, commit)
                if wanted.matches(change):
                    yield change
                    if stop.is_set():
                        return
            position = p
        now = time.monotonic()
        if position > before:
            quiet_since = now
            yield CaughtUp(position)
        if idle_timeout is not None and now - quiet_since >= idle_timeout:
            return  # (idle_timeout 0: as soon as caught up)
        stop.wait(poll)
