"""Aliases: named, movable pointers from ``(model_id, alias)`` to a version.

Every move is one small log commit (an :class:`~cas_repo.log.ops.AliasMove`): promoting a
version to ``prod`` or moving ``prod`` back (the production rollback) writes no model
bytes.

1. Validate the model id, alias name and version.
2. Build the move on the state the commit lands after: the version exists, its content
   is still stored, the model is not tombstoned; the move records where the alias was at
   that position.
3. Commit; a move to where the alias already points commits nothing.

So two processes moving one alias at once are both recorded, in log order, and the alias
ends where the later one put it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from . import lookup
from .errors import AliasTargetError, ModelNotFoundError
from .log.ledger import Ledger
from .log.ops import AliasMove
from .log.state import StoreState
from .metadata import validate_alias, validate_model_id, validate_version


def set_alias_ops(st: StoreState, model_id: str, alias: str, version: int, at: datetime,
                  by: str) -> list[AliasMove]:
    """The move of ``alias`` to ``version`` on ``st`` (none if it points there already)."""
    problem = lookup.target_problem(st, model_id, version)
    if problem is not None:
        e = st.models.get(model_id)
        what = f"model {model_id!r}" if e is None else f"version {version} of {model_id!r}"
        facts, advice, cli_advice = {
            "missing": (f"{what} does not exist", "`list_models()` / `history()` show what exists",
                        f"`cas-repo ls` / `cas-repo log {model_id}` show what exists"),
            "deleted": ("the model is deleted", f"`undelete_model({model_id!r})` first",
                        f"`cas-repo undelete {model_id}` first"),
            "purged": (f"gc purged its content on {problem.purged_at}", "choose another version",
                       "choose another version"),
        }[problem.kind]
        raise AliasTargetError.advised(f"cannot point {alias!r} at {model_id}@{version}: {facts}", advice, cli_advice)
    before = st.models[model_id].aliases.get(alias)
    return [] if before == version else [AliasMove(model_id, alias, version, before, at, by)]


def remove_alias_ops(st: StoreState, model_id: str, alias: str, at: datetime, by: str) -> list[AliasMove]:
    """The removal of ``alias`` on ``st`` (none if it is not set)."""
    e = st.models.get(model_id)
    if e is None:
        raise ModelNotFoundError(model_id)
    before = e.aliases.get(alias)
    return [] if before is None else [AliasMove(model_id, alias, None, before, at, by)]


def set_alias(ledger: Ledger, now: Callable[[], datetime], model_id: str, alias: str, version: int) -> int | None:
    """Commit a move of ``alias`` to ``version``; the version it pointed at before (None: new)."""
    validate_model_id(model_id)
    validate_alias(alias)
    validate_version(version)
    return _move(ledger, model_id, alias,
                 lambda st: set_alias_ops(st, model_id, alias, version, now(), ledger.writer))


def remove_alias(ledger: Ledger, now: Callable[[], datetime], model_id: str, alias: str) -> int | None:
    """Commit the removal of ``alias``; the version it pointed at (None: it was not set)."""
    validate_model_id(model_id)
    validate_alias(alias)
    return _move(ledger, model_id, alias, lambda st: remove_alias_ops(st, model_id, alias, now(), ledger.writer))


def _move(ledger: Ledger, model_id: str, alias: str,
          build: Callable[[StoreState], list[AliasMove]]) -> int | None:
    """Commit what ``build`` makes; where the alias was on the state the commit was built on."""
    before: list[int | None] = [None]

    def recorded(st: StoreState) -> list[AliasMove]:
        ops = build(st)
        before[0] = st.models[model_id].aliases.get(alias)
        return ops

    ledger.commit(recorded)
    return before[0]
