"""Appending to a model's history without new content: rollback, delete, undelete, tags, metrics.

Each is one log commit built from the folded state:

1. Validate what the caller named.
2. Build the operation on the state the commit lands after (the build runs again after
   every lost race), checking there that the model exists, is live, and — for a
   rollback — that the target version's content is still stored.
3. Commit; an operation that would change nothing (deleting a deleted model) commits
   nothing.

So the preconditions hold however many writers race.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from datetime import datetime

from . import lookup
from .errors import IntegrityError, InvalidMetadataError, ModelDeletedError, ModelPurgedError
from .log.ledger import Ledger
from .log.log import Log
from .log.ops import EventOp, MetricsOp, SaveOp
from .log.state import StoreState
from .manifest import Manifest
from .metadata import validate_metrics, validate_model_id, validate_version
from .objects.store import ObjectStore
from .rows import to_metadata


def rollback_ops(st: StoreState, log: Log, objects: ObjectStore, model_id: str, to_version: int,
                 at: datetime) -> list[SaveOp]:
    """The operation that makes ``to_version``'s content and metadata the head again, on ``st``."""
    row = lookup.row_in(st, log, model_id, to_version)
    problem = lookup.target_problem(st, model_id, to_version)
    if problem is not None and problem.kind == "deleted":
        raise ModelDeletedError(model_id)
    if problem is not None and problem.kind == "purged":
        raise ModelPurgedError(model_id, to_version, problem.purged_at)
    mloc = st.entries.get(row.manifest)
    lost = mloc is None
    if mloc is not None:
        chunks = Manifest.from_bytes(objects.read(mloc)).chunks()
        lost = len(st.locate(c.digest for c in chunks)) != len({c.digest for c in chunks})
    if lost:
        raise IntegrityError(f"version {to_version} has lost objects; it cannot be rolled back to",
                             model_id=model_id, version=to_version)
    e = st.models[model_id]
    # The version's metadata with its tags as they are now.
    return [SaveOp.from_metadata(to_metadata(row), kind="rollback", version=e.head_version + 1, seq=e.seq + 1,
                                 rollback_of=to_version, manifest=row.manifest, at=at,
                                 logical_size=row.logical_size, new_bytes=0)]


def rollback(ledger: Ledger, objects: ObjectStore, now: Callable[[], datetime], model_id: str,
             to_version: int) -> int:
    """Commit a rollback of ``model_id`` to ``to_version``; the new version's number."""
    validate_model_id(model_id)
    validate_version(to_version)
    _, ops = ledger.commit(lambda st: rollback_ops(st, ledger.log, objects, model_id, to_version, now()))
    op = ops[0]
    assert isinstance(op, SaveOp)  # what rollback_ops returns
    return op.version


def event_ops(st: StoreState, model_id: str, kind: str, at: datetime, *, deleted: bool | None,
              version: int | None = None, tags: dict[str, str | None] | None = None) -> list[EventOp]:
    """A delete, undelete (``deleted`` says which) or tag event on ``st``; none if it changes nothing."""
    e = lookup.entry(st, model_id)
    if kind in ("delete", "undelete") and e.deleted == deleted:
        return []
    return [EventOp(model_id, e.seq + 1, kind, version or e.head_version, at, "",
                    e.deleted if deleted is None else deleted, dict(tags or {}))]


def delete_model(ledger: Ledger, now: Callable[[], datetime], model_id: str) -> None:
    """Commit a tombstone of ``model_id`` (nothing if it is deleted already)."""
    validate_model_id(model_id)
    ledger.commit(lambda st: event_ops(st, model_id, "delete", now(), deleted=True))


def undelete_model(ledger: Ledger, now: Callable[[], datetime], model_id: str) -> None:
    """Commit the end of ``model_id``'s tombstone (nothing if it is live)."""
    validate_model_id(model_id)
    ledger.commit(lambda st: event_ops(st, model_id, "undelete", now(), deleted=False))


def set_tags(ledger: Ledger, now: Callable[[], datetime], model_id: str, tags: dict[str, str | None],
             version: int | None = None) -> None:
    """Commit a tag event on a version (default: the head); a None value removes the tag."""
    row = lookup.current_row(ledger, model_id, version)
    for k, v in tags.items():
        if not isinstance(k, str) or not k or (v is not None and not isinstance(v, str)):
            raise InvalidMetadataError(f"tags are str -> str (or None to remove), got {k!r}: {v!r}")
    ledger.commit(lambda st: event_ops(st, row.model_id, "tag", now(), deleted=None, version=row.version,
                                       tags=tags))


def log_metrics(ledger: Ledger, now: Callable[[], datetime], model_id: str, metrics: Mapping[str, float],
                version: int | None = None) -> int:
    """Commit metric values of a version (default: the latest) that arrived after its save.

    ``model_id`` may be a reference (``"m@3"``, ``"m@prod"``). Every value is kept in the
    history with the time it arrived; one of a name the version already has becomes its
    current value. Returns the version the values were logged for.

    Raises:
        InvalidMetadataError: no values, or one that is not a finite number.
        ModelNotFoundError / AliasNotFoundError: no such model, version or alias.
        ModelDeletedError: the model is tombstoned (undelete it first).
    """
    if not isinstance(metrics, Mapping) or not metrics:
        raise InvalidMetadataError("log_metrics needs at least one metric: {name: number}")
    # numpy's floats are numbers too (ints are checked as they are: one may overflow a double).
    values = validate_metrics({k: float(v) if isinstance(v, numbers.Real) and not isinstance(v, (bool, int)) else v
                               for k, v in metrics.items()})
    row = lookup.current_row(ledger, model_id, version)

    def build(st: StoreState) -> list[MetricsOp]:
        e = lookup.entry(st, row.model_id)
        if e.deleted:
            raise ModelDeletedError(row.model_id)
        return [MetricsOp(row.model_id, e.seq + 1, row.version, now(), "", values)]

    ledger.commit(build)
    return row.version
