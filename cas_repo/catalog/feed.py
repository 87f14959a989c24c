"""Folding log commits into the catalog: the same operations, the same admission rule.

The catalog is an index of the log. It records the position it has folded up to in
``log_index``; catching up applies each later commit's operations in order, admitting
exactly those the in-memory fold admits (:func:`cas_repo.log.state.admit`), in one
transaction with the new position, so an interrupted catch-up leaves no half of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from ..canonical import canonical_json
from ..log.commit import Commit
from ..log.ledger import Ledger
from ..log.ops import (
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
from ..log.state import Head, PolicyHead, admit
from .bulk_fold import BULK_MIN, bulkable, fold_run
from .catalog import Session
from .cluster import keep_clustered
from .convert import naive_utc
from .maintenance import IN_PACKS, forget_rows
from .retention import insert_marks
from .writes import fold_event, fold_metrics, fold_save, insert_locations, insert_rows

logger = logging.getLogger(__name__)


# Commits folded into the index per transaction while catching up.
_BATCH = 2048


class IndexFeeder:
    """Keeps a catalog index caught up with one store's log (the catalog calls it per session)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def catch_up(self, s: Session) -> bool:
        """Fold the commits the index lacks into it.

        Returns False, folding nothing, when the index is not one of this store's states
        (another store's, or this one's before it was recreated): the catalog resets it.
        """
        store_id = self.ledger.log.store_id()
        have = indexed(s)
        position = self.ledger.refresh()
        if have is not None and (have[0] != store_id or have[1] > position):
            if have[0] == store_id:
                # Commits are never deleted: an index ahead of the log means the log lost
                # its newest commits (a restore from an older copy, a deletion by hand).
                logger.warning("the store's log at %s ends at commit %d but its index had folded commit %d: the "
                               "newest commits are gone (restored from an older copy?); run `cas-repo fsck`",
                               self.ledger.log.backend.url, position, have[1])
            return False
        batch: list[tuple[int, Commit]] = []
        folded = 0
        for p, commit in self.ledger.log_after(have[1] if have else 0):
            batch.append((p, commit))
            folded += 1
            if len(batch) >= _BATCH:
                fold(s, store_id, batch)
                batch = []
        fold(s, store_id, batch)
        if folded:
            keep_clustered(s)
        return True

    def is_current(self, have: tuple[str, int] | None) -> bool:
        """Whether an index at ``have`` (store id, position) holds every commit of this store."""
        return have is not None and have[0] == self.ledger.log.store_id() and have[1] == self.ledger.refresh()


def indexed(s: Session) -> tuple[str, int] | None:
    """``(store_id, position)`` this catalog indexes, or None for a new catalog."""
    rows = s.rows("SELECT store_id, position FROM log_index")
    return (rows[0][0], rows[0][1]) if rows else None


def _heads(s: Session, model_ids: Iterable[str]) -> dict[str, Head]:
    ids = sorted(set(model_ids))
    rows = s.rows("SELECT model_id, head_version, last_seq, deleted FROM models "
                  "WHERE model_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
    heads = {m: Head(v, q, d) for m, v, q, d in rows}
    for m, alias, version in s.rows("SELECT model_id, alias, version FROM v_aliases "
                                    "WHERE model_id IN (SELECT unnest(?::VARCHAR[]))", [ids]):
        heads[m].aliases[alias] = version
    return heads


def alias_row(position: int, index: int, op: AliasMove) -> tuple:
    """The ``alias_moves`` row of an admitted move (both fold paths insert exactly this)."""
    return (position, index, op.model_id, op.alias, op.previous, op.version, naive_utc(op.at), op.by)


def policy_row(position: int, op: PolicyOp) -> tuple:
    """The ``policies`` row of an admitted policy operation."""
    policy = None if op.policy is None else canonical_json(op.policy).decode()
    return (position, op.previous, naive_utc(op.at), op.by, policy)


def _policy_position(s: Session) -> int | None:
    (position,), = s.rows("SELECT max(log_position) FROM policies")
    return position


def fold(s: Session, store_id: str, commits: Sequence[tuple[int, Commit]]) -> int:
    """Apply ``commits`` (consecutive, after the indexed position) in one transaction.

    Returns the number of operations admitted.
    """
    if not commits:
        return 0
    admitted = 0
    with s.transaction(f"indexing log commits {commits[0][0]}–{commits[-1][0]}"):
        insert_rows(s, "commits", [(p, c.author, c.writer) for p, c in commits])
        heads = _heads(s, {o.model_id for _, c in commits for o in c.ops if hasattr(o, "model_id")})
        policy = PolicyHead(_policy_position(s), 0)
        run: list = []
        # Alias moves touch only their own table: they join any run and go in with it.
        moves: list[tuple] = []
        for position, commit in commits:
            policy.landing = position
            for i, op in enumerate(commit.ops):
                if not admit(op, heads, policy):
                    continue
                admitted += 1
                if isinstance(op, PolicyOp):
                    # Its own table, read by nothing else the fold writes: it never breaks a run.
                    insert_rows(s, "policies", [policy_row(position, op)])
                    continue
                if isinstance(op, AliasMove):
                    moves.append(alias_row(position, i, op))
                    continue
                if bulkable(op):
                    run.append((position, op))
                    continue
                _flush(s, run, moves)
                run, moves = [], []
                apply(s, position, op)
        _flush(s, run, moves)
        s.con.execute("INSERT INTO log_index VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                      "store_id = excluded.store_id, position = excluded.position",
                      [store_id, commits[-1][0]])
    return admitted


def _flush(s: Session, run: list, moves: list[tuple]) -> None:
    """Apply a run of saves, deletes and alias moves: in bulk when long, else one call each."""
    if len(run) + len(moves) >= BULK_MIN:
        fold_run(s, run, moves)
    else:
        for position, op in run:
            apply(s, position, op)
        for row in moves:
            insert_rows(s, "alias_moves", [row])


def apply(s: Session, position: int, op: Op) -> None:
    """One admitted operation of the commit at ``position``, inside the caller's transaction."""
    if isinstance(op, SaveOp):
        fold_save(s, position, op)
    elif isinstance(op, EventOp):
        fold_event(s, position, op)
    elif isinstance(op, MetricsOp):
        fold_metrics(s, position, op)
    elif isinstance(op, MarkOp):
        insert_marks(s, position, [op])
    elif isinstance(op, AdoptEntries):
        insert_locations(s, op.locations, op.new_packs, op.at)
        insert_rows(s, "manifest_chunks", [(m, i, d, n) for m, chunks in op.manifests
                                           for i, (d, n) in enumerate(chunks)], or_ignore=True)
    elif isinstance(op, ForgetPacks):
        _drop_packs(s, list(op.packs))
    elif isinstance(op, MoveEntries):
        _move(s, op)
    else:  # pragma: no cover - admit() refuses anything else
        raise TypeError(type(op).__name__)


def _drop_packs(s: Session, packs: list[str]) -> None:
    forget_rows(s, packs)
    s.con.execute(f"DELETE FROM packs WHERE {IN_PACKS}", [packs])


def _move(s: Session, op: MoveEntries) -> None:
    insert_rows(s, "packs", [(p, size, n, naive_utc(op.at)) for p, size, n in op.new_packs], or_ignore=True)
    moved = op.locations
    s.con.execute(
        'UPDATE objects SET pack = n.pack, "offset" = n.off, stored_size = n.stored, codec = n.codec '
        "FROM (SELECT unnest(?::VARCHAR[]) AS digest, unnest(?::VARCHAR[]) AS pack, unnest(?::BIGINT[]) AS off, "
        "unnest(?::BIGINT[]) AS stored, unnest(?::TINYINT[]) AS codec) n "
        "WHERE objects.digest = n.digest AND objects.pack IN (SELECT unnest(?::VARCHAR[]))",
        [[l.digest.hex for l in moved], [l.pack.hex for l in moved], [l.offset for l in moved],
         [l.stored_size for l in moved], [l.codec for l in moved], list(op.sources)])
    _drop_packs(s, list(op.sources))
