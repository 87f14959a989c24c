"""Reads answered from the folded log state, without DuckDB: versions, heads, aliases.

These are the rules for turning what a caller names — ``model``, ``model@7``,
``model@prod`` — into one version, shared by loads, metadata reads, rollbacks and alias
moves (:mod:`cas_repo.as_of` applies the same rules to the index as of a past time):

1. ``model@alias`` resolves to the version the alias points at in the same state; a
   tombstoned model serves nothing through its aliases.
2. No version given: the head, unless the model is tombstoned.
3. An explicit version is served even when the model is tombstoned (its history stays).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .errors import AliasNotFoundError, IntegrityError, ModelDeletedError, ModelNotFoundError
from .log.ledger import Ledger
from .log.log import Log
from .log.ops import SaveOp
from .log.state import ModelEntry, StoreState, VersionRow, VersionState, version_row
from .metadata import split_ref, validate_model_id, validate_version


def entry(st: StoreState, model_id: str) -> ModelEntry:
    """The model's fold state.

    Raises:
        InvalidModelIdError: a malformed id. ModelNotFoundError: no such model.
    """
    validate_model_id(model_id)
    e = st.models.get(model_id)
    if e is None:
        raise ModelNotFoundError(model_id)
    return e


def resolve(st: StoreState, model_id: str, version: int | None) -> tuple[str, int | None]:
    """``model_id`` (maybe ``model@7`` or ``model@alias``) and ``version`` as a model and a version.

    Raises:
        AliasNotFoundError: the alias is not set. ModelDeletedError: an alias of a tombstoned model.
        InvalidAliasError / InvalidModelIdError: a malformed reference.
    """
    if "@" not in model_id:
        return model_id, version
    model_id, version, alias = split_ref(model_id, version)
    if alias is None:
        return model_id, version
    e = entry(st, model_id)
    if e.deleted:
        raise ModelDeletedError(model_id)
    target = e.aliases.get(alias)
    if target is None:
        raise AliasNotFoundError(model_id, alias)
    return model_id, target


def row_in(st: StoreState, log: Log, model_id: str, version: int | None) -> VersionRow:
    """A version's row (the head when ``version`` is None) from the folded state.

    An older version's metadata is read back from the commit that made it (one GET).

    Raises:
        ModelNotFoundError / ModelDeletedError / AliasNotFoundError: as the rules above say.
        IntegrityError: the commit that made the version no longer holds it.
    """
    model_id, version = resolve(st, model_id, version)
    e = entry(st, model_id)
    if version is None:
        if e.deleted:
            raise ModelDeletedError(model_id)
        return e.head_row
    validate_version(version)
    if version > e.head_version:
        raise ModelNotFoundError(model_id, version)
    if version == e.head_version:
        return e.head_row
    ref = e.versions[version - 1]
    commit = log.read(ref.position)
    op = next((o for o in (commit.ops if commit else ()) if isinstance(o, SaveOp)
               and o.model_id == model_id and o.version == version), None)
    if op is None:
        raise IntegrityError(f"log commit {ref.position} no longer holds version {version}: the log was "
                             "altered; run `cas-repo fsck`", model_id=model_id, version=version)
    return version_row(op, e.deleted, ref.tags, ref.logged)


def current_row(ledger: Ledger, model_id: str, version: int | None) -> VersionRow:
    """:func:`row_in` on the state with every commit made so far folded in."""
    with ledger.current() as st:
        return row_in(st, ledger.log, model_id, version)


def heads(st: StoreState, experiment_name: str | None = None, model_type: str | None = None,
          include_deleted: bool = False) -> list[VersionRow]:
    """Each model's head version, newest first (ties by model id); tombstoned ones on request."""
    rows = [e.head_row for e in st.models.values()
            if (include_deleted or not e.deleted)
            and (experiment_name is None or e.head_row.metadata["experiment_name"] == experiment_name)
            and (model_type is None or e.head_row.metadata["model_type"] == model_type)]
    rows.sort(key=lambda r: r.model_id)
    rows.sort(key=lambda r: r.saved_at, reverse=True)
    return rows


def aliases_of(st: StoreState, model_id: str) -> dict[str, int]:
    """The model's aliases as they stand, name -> version, sorted by name."""
    return dict(sorted(entry(st, model_id).aliases.items()))


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """Why a version cannot become current again (a rollback's or an alias's target).

    ``kind`` is ``"missing"`` (no such model or version), ``"deleted"`` (the model is
    tombstoned) or ``"purged"`` (gc freed the version's content, at ``purged_at``).
    """

    kind: str
    purged_at: datetime | None = None


def target_problem(st: StoreState, model_id: str, version: int) -> TargetProblem | None:
    """What stops ``model_id@version`` being made current (None: nothing); each caller raises its own error."""
    found = version_state(st, model_id, version)
    if found is None:
        return TargetProblem("missing")
    e, ref = found
    if e.deleted:
        return TargetProblem("deleted")
    if ref.mark == "purge":
        return TargetProblem("purged", ref.mark_at)
    return None


def version_state(st: StoreState, model_id: str, version: int) -> tuple[ModelEntry, VersionState] | None:
    """The model's entry and the version's fold state, or None if either does not exist."""
    e = st.models.get(model_id)
    if e is None or not 1 <= version <= e.head_version:
        return None
    return e, e.versions[version - 1]

