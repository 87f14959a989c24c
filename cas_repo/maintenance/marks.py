"""Retire, restore and purge events: log operations built from the state they land on.

A tool plans with the catalog (SQL over the index), then commits its marks through the
ledger. The operations are built in the commit's ``build(state)``, so each mark's
``seq`` is the model's next one at the position the commit takes, and a mark whose
reason went away meanwhile (a restore, an undelete, a purge by another gc) is left out
instead of being recorded against a state it was not meant for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..log.ops import MarkOp
from ..log.state import ModelEntry, StoreState, VersionState
from ..lookup import version_state
from ..repository import ModelStore


@dataclass(frozen=True, slots=True)
class MarkRequest:
    """A retention event to record for one version (purges carry what the version was)."""

    model_id: str
    version: int
    kind: str
    logical_size: int | None = None
    new_bytes: int | None = None


Check = Callable[[ModelEntry, VersionState, MarkRequest], bool]


def still_valid(e: ModelEntry, ref: VersionState, r: MarkRequest) -> bool:
    """Whether ``r`` still means what it meant: retire a live older version of a live model
    that no alias points at, restore a retired one, purge an unaliased one not purged yet."""
    if r.kind == "retire":
        return (ref.mark is None and r.version < e.head_version and not e.deleted
                and r.version not in e.aliases.values())
    if r.kind == "restore":
        return ref.mark == "retire"
    return r.kind == "purge" and ref.mark != "purge" and r.version not in e.aliases.values()


def mark_ops(st: StoreState, requests: Sequence[MarkRequest], at: datetime,
             check: Check = still_valid) -> list[MarkOp]:
    """The mark operations for those ``requests`` that ``check`` passes on ``st``, in order."""
    seqs: dict[str, int] = {}
    out = []
    for r in sorted(requests, key=lambda r: (r.model_id, r.version)):
        found = version_state(st, r.model_id, r.version)
        if found is None or not check(*found, r):
            continue
        seqs[r.model_id] = seqs.get(r.model_id, found[0].seq) + 1
        out.append(MarkOp(r.model_id, seqs[r.model_id], r.kind, r.version, at, "", r.logical_size, r.new_bytes))
    return out


def commit_marks(store: ModelStore, requests: Sequence[MarkRequest], at: datetime,
                 check: Check = still_valid) -> list[MarkOp]:
    """Commit the marks of ``requests`` that still hold, in one log commit; returns them."""
    if not requests:
        return []
    _, ops = store.ledger.commit(lambda st: mark_ops(st, requests, at, check))
    return [o for o in ops if isinstance(o, MarkOp)]
