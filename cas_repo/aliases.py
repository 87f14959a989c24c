"""Aliases: named, movable pointers from ``(model_id, alias)`` to a version.

Every move is one small log commit (an :class:`~cas_repo.log.ops.AliasMove`): promoting a
version to ``prod`` or moving ``prod`` back (the production rollback) writes no model
bytes. Its preconditions (the version exists, its content is still stored, the model is
not tombstoned) are checked on the state the commit lands after, and the move records
where the alias was at that position, so two processes moving one alias at once are both
recorded, in log order, and the alias ends where the later one put it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .catalog import history
from .catalog.values import AliasChange
from .errors import AliasTargetError, ModelNotFoundError
from .log.ops import AliasMove
from .log.state import StoreState
from .metadata import validate_alias, validate_model_id, validate_version

if TYPE_CHECKING:
    from .repository import ModelStore


class AliasMixin:
    """ModelStore's alias methods (mixed into ModelStore)."""

    def set_alias(self: ModelStore, model_id: str, alias: str, version: int) -> int | None:
        """Point ``alias`` of ``model_id`` at ``version`` (one log commit; no model bytes).

        Returns:
            The version the alias pointed at before (None: it is new). Setting it where it
            already points records nothing.

        Raises:
            InvalidAliasError: the alias name is not ``[a-z][a-z0-9_-]{0,63}``.
            AliasTargetError: no such version, or it was purged, or the model is tombstoned.
        """
        validate_model_id(model_id)
        validate_alias(alias)
        validate_version(version)
        self._check_open()
        before: list[int | None] = [None]

        def build(st: StoreState) -> list[AliasMove]:
            e = st.models.get(model_id)
            if e is None or version > e.head_version:
                what = f"model {model_id!r}" if e is None else f"version {version} of {model_id!r}"
                raise AliasTargetError(f"cannot point {alias!r} at {model_id}@{version}: {what} does not exist; "
                                       "`list_models()` / `history()` show what exists")
            if e.deleted:
                raise AliasTargetError(f"cannot point {alias!r} at {model_id}@{version}: the model is deleted; "
                                       f"`undelete_model({model_id!r})` first")
            ref = e.versions[version - 1]
            if ref.mark == "purge":
                raise AliasTargetError(f"cannot point {alias!r} at {model_id}@{version}: gc purged its content "
                                       f"on {ref.mark_at}; choose another version")
            before[0] = e.aliases.get(alias)
            if before[0] == version:
                return []
            return [AliasMove(model_id, alias, version, before[0], self._now(), self.ledger.writer)]

        self.ledger.commit(build)
        return before[0]

    def remove_alias(self: ModelStore, model_id: str, alias: str) -> int | None:
        """Remove ``alias`` of ``model_id``; returns the version it pointed at (None: it was not set).

        Raises:
            ModelNotFoundError: no such model.
        """
        validate_model_id(model_id)
        validate_alias(alias)
        self._check_open()
        before: list[int | None] = [None]

        def build(st: StoreState) -> list[AliasMove]:
            e = st.models.get(model_id)
            if e is None:
                raise ModelNotFoundError(model_id)
            before[0] = e.aliases.get(alias)
            if before[0] is None:
                return []
            return [AliasMove(model_id, alias, None, before[0], self._now(), self.ledger.writer)]

        self.ledger.commit(build)
        return before[0]

    def aliases(self: ModelStore, model_id: str) -> dict[str, int]:
        """The aliases of ``model_id`` as they stand, name -> version (sorted by name).

        Raises:
            ModelNotFoundError: no such model.
        """
        self._check_open()
        with self.ledger.current() as st:
            return dict(sorted(self._entry(st, model_id).aliases.items()))

    def alias_history(self: ModelStore, model_id: str, alias: str | None = None) -> list[AliasChange]:
        """Every recorded move of ``model_id``'s aliases (or of one), in log order."""
        validate_model_id(model_id)
        if alias is not None:
            validate_alias(alias)
        with self.catalog.session() as s:
            return history.alias_history(s, model_id, alias)
