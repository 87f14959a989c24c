"""The watch loop: follow a store's log, hand each wanted change to a handler, keep a cursor.

1. With a cursor file: lock it; read it (it must be of this store and not past the log's
   end), or, when it does not exist yet, take the start (``after``, else the log's end) and
   write it at once, so a change made after the first start is never missed.
2. Follow the log from there (:func:`cas_repo.follow.changes`).
3. Per change: call the handler; a failed attempt is retried with exponential backoff and
   jitter (or after the wait the handler's receiver asked for), ``retries`` times; a
   permanent failure is not retried. Only then is the cursor moved past the change.
4. A handler that still fails ends the watch (:class:`HandlerFailedError`) with the cursor
   before the change, so a restart retries it. ``stop`` ends the watch after the current
   handler.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from ..errors import CursorError, DeliveryError, HandlerFailedError
from ..follow import CaughtUp, Change, ChangeFilter, with_progress
from ..repository import ModelStore
from .cursor import Cursor, CursorFile

Handler = Callable[[Change], None]
#: The longest wait between two attempts of one change (before jitter).
MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class WatchReport:
    """What a watch did: how many changes it handled, the last one, and whether ``stop`` ended it
    with a change left unhandled (``pending``: its id; a restart with the cursor retries it)."""

    handled: int
    last: str | None
    pending: str | None = None


def describe(change: Change) -> str:
    """``event <id> (<kind> of <model>@<version>, log position <p>)`` for messages."""
    what = change.kind
    if change.model_id is not None:
        what += f" of {change.model_id}" + (f"@{change.version}" if change.version is not None else "")
    if change.alias is not None:
        what += f" ({change.alias})"
    return f"event {change.id} ({what}, log position {change.position})"


def _start(store: ModelStore, cursors: CursorFile | None, after: int | None) -> tuple[int, Cursor | None]:
    """Where to follow from, and the cursor in use (written at once when new)."""
    if cursors is None:
        return (store.log_position() if after is None else after), None
    end = store.log_position()
    store_id = store.ledger.log.store_id()
    cursor = cursors.read()
    if cursor is None:
        start = end if after is None else after
        if start > end:
            raise CursorError(f"--after {start} is past the log's end ({end}); give {end} or less")
        cursor = Cursor(store_id, start)
        cursors.write(cursor)
        return start, cursor
    if cursor.store != store_id and not (cursor.store == "" and cursor.position == 0):
        raise CursorError(f"the cursor {cursors.path} belongs to another store ({cursor.store or 'an empty one'}, "
                          f"this one is {store_id or 'empty'}): the store was recreated, or the cursor is another "
                          "watcher's. Give this watcher a new --cursor file (it starts from the log's end, or "
                          "--after N), or delete this one")
    if cursor.position > end:
        raise CursorError(f"the cursor {cursors.path} is at log position {cursor.position}, past the log's end "
                          f"({end}): the log was cut, or an older copy of the store put back. Run `cas-repo fsck`; "
                          "if the store is as it should be, delete the cursor and restart with --after N (the last "
                          "position your handler saw that the store still has)")
    if cursor.store != store_id:
        cursor = Cursor(store_id, cursor.position, cursor.index)  # taken on an empty store: now it has an id
        cursors.write(cursor)
    return cursor.start(), cursor


def _deliver(handler: Handler, change: Change, retries: int, backoff: float, stop: threading.Event) -> bool:
    """Hand ``change`` to ``handler`` until it succeeds; False if ``stop`` came during a wait.

    Raises:
        HandlerFailedError: the last of ``retries + 1`` attempts failed, or one failed for good.
    """
    for attempt in range(retries + 1):
        try:
            handler(change)
            return True
        except DeliveryError as exc:
            failure = exc
            if exc.permanent or attempt == retries:
                break
            delay = exc.retry_after if exc.retry_after is not None else \
                min(backoff * 2 ** attempt, MAX_BACKOFF) * random.uniform(0.5, 1.0)
            if stop.wait(delay):
                return False
    tries = "once: the failure is permanent" if failure.permanent else f"{retries + 1} times"
    raise HandlerFailedError(
        change.id, f"{describe(change)} was not handled ({failure}; tried {tries}). The cursor stays before it: "
        "fix the handler or its receiver, then restart `cas-repo watch` with the same --cursor to retry it")


def run_watch(store: ModelStore, handler: Handler, *, cursor: str | Path | None = None, after: int | None = None,
              models: Sequence[str] = (), kinds: Sequence[str] = (), aliases: Sequence[str] = (),
              once: bool = False, poll: float = 0.5, retries: int = 5, backoff: float = 1.0,
              stop: threading.Event | None = None) -> WatchReport:
    """Hand every wanted change after the start to ``handler``, in log order (see the module's steps).

    Args:
        cursor: a cursor file to resume from and keep (None: none; start at ``after``).
        after: where to start when there is no cursor yet (None: the log's end; 0: the beginning).
        models, kinds, aliases: the filters of :meth:`ModelStore.follow`.
        once: handle the changes there are now, then return.
        retries: attempts after the first failed one; backoff: the first wait between them, in seconds.

    Raises:
        HandlerFailedError: a change could not be handled (the cursor stays before it).
        CursorError / CursorLockedError: the cursor cannot be used.
        InvalidWatchFilterError: an unknown kind, or ``after`` negative or past the log's end.
    """
    stop = stop or threading.Event()
    handled, last = 0, None
    with CursorFile(cursor, store.url) if cursor is not None else nullcontext() as cursors:
        start, at = _start(store, cursors, after)
        wanted = ChangeFilter.of(models, kinds, aliases)
        for change in with_progress(store.ledger, start, wanted=wanted, poll=poll, stop=stop,
                                    idle_timeout=0 if once else None):
            if isinstance(change, CaughtUp):
                # Every wanted change up to here was handled: move the cursor past the rest, so
                # a restart with narrow filters does not read the same commits again.
                if cursors is not None and at is not None and change.position > at.position:
                    at = Cursor(at.store or store.ledger.log.store_id(), change.position)
                    cursors.write(at)
                continue
            if at is not None and at.handled(change.position, change.index):
                continue
            if not _deliver(handler, change, retries, backoff, stop):
                return WatchReport(handled, last, pending=change.id)
            handled, last = handled + 1, change.id
            if cursors is not None and at is not None:
                at = Cursor(at.store or store.ledger.log.store_id(), change.position, change.index)
                cursors.write(at)
            if stop.is_set():
                break
    return WatchReport(handled, last)
