"""Folding log commits into the catalog: the same operations, the same admission rule.

The catalog is an index of the log. It records the position it has folded up to in
``log_index``; catching up applies each later commit's operations in order, admitting
exactly those the in-memory fold admits (:func:`cas_repo.log.state.admit`), in one
transaction with the new position, so an interrupted catch-up leaves no half of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..log.ops import AdoptEntries, AliasMove, ForgetPacks, MoveEntries, Op
from ..log.state import Head, admit
from .bulk_fold import BULK_MIN, bulkable, fold_run
from .catalog import Session
from .convert import naive_utc
from .maintenance import _IN_LIST, _forget_rows
from .retention import _insert_marks
from .values import EventCommit, MarkCommit, SaveCommit


def indexed(s: Session) -> tuple[str, int] | None:
    """``(store_id, position)`` this catalog indexes, or None for a new catalog."""
    rows = s._all("SELECT store_id, position FROM log_index")
    return (rows[0][0], rows[0][1]) if rows else None


def _heads(s: Session, model_ids: Iterable[str]) -> dict[str, Head]:
    ids = sorted(set(model_ids))
    rows = s._all("SELECT model_id, head_version, last_seq, deleted FROM models "
                  "WHERE model_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
    heads = {m: Head(v, q, d) for m, v, q, d in rows}
    for m, alias, version in s._all("SELECT model_id, alias, version FROM v_aliases "
                                    "WHERE model_id IN (SELECT unnest(?::VARCHAR[]))", [ids]):
        heads[m].aliases[alias] = version
    return heads


def alias_row(position: int, index: int, op: AliasMove) -> tuple:
    """The ``alias_moves`` row of an admitted move (both fold paths insert exactly this)."""
    return (position, index, op.model_id, op.alias, op.previous, op.version, naive_utc(op.at), op.by)


def fold(s: Session, store_id: str, commits: Sequence[tuple[int, Sequence[Op]]]) -> int:
    """Apply ``commits`` (consecutive, after the indexed position) in one transaction.

    Returns the number of operations admitted.
    """
    if not commits:
        return 0
    admitted = 0
    with s.transaction(f"indexing log commits {commits[0][0]}–{commits[-1][0]}"):
        heads = _heads(s, {o.model_id for _, ops in commits for o in ops if hasattr(o, "model_id")})
        run: list = []
        # Alias moves touch only their own table: they join any run and go in with it.
        moves: list[tuple] = []
        for position, ops in commits:
            for i, op in enumerate(ops):
                if not admit(op, heads):
                    continue
                admitted += 1
                if isinstance(op, AliasMove):
                    moves.append(alias_row(position, i, op))
                    continue
                if bulkable(op):
                    run.append(op)
                    continue
                _flush(s, run, moves)
                run, moves = [], []
                apply(s, op)
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
        for op in run:
            apply(s, op)
        for row in moves:
            s._insert_rows("alias_moves", [row])


def apply(s: Session, op: Op) -> None:
    """One admitted operation, inside the caller's transaction."""
    if isinstance(op, SaveCommit):
        s.commit_save(op)
    elif isinstance(op, EventCommit):
        s.commit_event(op)
    elif isinstance(op, MarkCommit):
        _insert_marks(s, [op], (), (), op.at)
    elif isinstance(op, AdoptEntries):
        s._insert_locations(op.locations, op.new_packs, op.at)
        s._insert_rows("manifest_chunks", [(m, i, d, n) for m, chunks in op.manifests
                                           for i, (d, n) in enumerate(chunks)], or_ignore=True)
    elif isinstance(op, ForgetPacks):
        _drop_packs(s, list(op.packs))
    elif isinstance(op, MoveEntries):
        _move(s, op)
    else:  # pragma: no cover - admit() refuses anything else
        raise TypeError(type(op).__name__)


def _drop_packs(s: Session, packs: list[str]) -> None:
    _forget_rows(s, packs)
    s.con.execute(f"DELETE FROM packs WHERE {_IN_LIST}", [packs])


def _move(s: Session, op: MoveEntries) -> None:
    s._insert_rows("packs", [(p, size, n, naive_utc(op.at)) for p, size, n in op.new_packs], or_ignore=True)
    moved = op.locations
    s.con.execute(
        'UPDATE objects SET pack = n.pack, "offset" = n.off, stored_size = n.stored, codec = n.codec '
        "FROM (SELECT unnest(?::VARCHAR[]) AS digest, unnest(?::VARCHAR[]) AS pack, unnest(?::BIGINT[]) AS off, "
        "unnest(?::BIGINT[]) AS stored, unnest(?::TINYINT[]) AS codec) n "
        "WHERE objects.digest = n.digest AND objects.pack IN (SELECT unnest(?::VARCHAR[]))",
        [[l.digest.hex for l in moved], [l.pack.hex for l in moved], [l.offset for l in moved],
         [l.stored_size for l in moved], [l.codec for l in moved], list(op.sources)])
    _drop_packs(s, list(op.sources))
