"""Appending to a model's history without new content: rollback, delete, undelete, tags.

Each is one log commit built from the folded state; its preconditions (the model exists,
is not deleted, the target version's content is still stored) are checked on the state
the commit lands after, so they hold however many writers race.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .catalog.values import EventCommit, SaveCommit
from .errors import IntegrityError, InvalidMetadataError, ModelDeletedError, ModelPurgedError
from .log.state import StoreState
from .manifest import Manifest
from .metadata import validate_model_id, validate_version
from .rows import metadata_json, to_metadata

if TYPE_CHECKING:
    from .repository import ModelStore


class EditsMixin:
    """ModelStore's history edits; each is one small commit in the log."""

    def rollback(self: ModelStore, model_id: str, to_version: int) -> int:
        """Append a new version whose content and metadata are those of ``to_version``.

        Costs one small commit: the content is shared with ``to_version``.

        Returns:
            The number of the new version.

        Raises:
            ModelNotFoundError: no such model or version. ModelDeletedError: undelete first.
            ModelPurgedError / IntegrityError: the target's content is gone (gc'd or damaged).
        """
        validate_model_id(model_id)
        validate_version(to_version)
        self._check_open()

        def build(st: StoreState) -> list[SaveCommit]:
            row = self._row_in(st, model_id, to_version)
            e = st.models[model_id]
            if e.deleted:
                raise ModelDeletedError(model_id)
            ref = e.versions[to_version - 1]
            if ref.mark == "purge":
                raise ModelPurgedError(model_id, to_version, ref.mark_at)
            mloc = st.entries.get(row.manifest)
            lost = mloc is None
            if not lost:
                chunks = Manifest.from_bytes(self.objects.read(mloc)).chunks()
                lost = len(st.locate(c.digest for c in chunks)) != len({c.digest for c in chunks})
            if lost:
                raise IntegrityError(f"version {to_version} has lost objects; it cannot be rolled back to",
                                     model_id=model_id, version=to_version)
            md = to_metadata(row)
            return [SaveCommit(
                model_id=model_id, version=e.head_version + 1, seq=e.seq + 1, kind="rollback",
                rollback_of=to_version, manifest=row.manifest, record="", at=self._now(),
                created_at=md.created_at, experiment_name=md.experiment_name, model_type=md.model_type,
                qlib_recorder_id=md.qlib_recorder_id, metrics=md.metrics, hyperparameters=md.hyperparameters,
                lineage=md.lineage, metadata_json=json.dumps(metadata_json(md), sort_keys=True),
                logical_size=row.logical_size, new_bytes=0, tags=md.tags,
                parents=tuple((m, int(v)) for m, _, v in (p.rpartition("@") for p in md.parents)),
            )]

        _, ops = self.ledger.commit(build)
        return ops[0].version

    def delete_model(self: ModelStore, model_id: str) -> None:
        """Tombstone ``model_id``: it leaves ``load_model``/``list_models``; bytes stay until gc.

        Deleting a deleted model does nothing. Raises ModelNotFoundError for an unknown id.
        """
        self._event(model_id, "delete", deleted=True)

    def undelete_model(self: ModelStore, model_id: str) -> None:
        """Bring back a tombstoned model (its latest version is live again)."""
        self._event(model_id, "undelete", deleted=False)

    def _event(self: ModelStore, model_id: str, kind: str, *, deleted: bool | None,
               version: int | None = None, tags: dict[str, str | None] | None = None) -> None:
        validate_model_id(model_id)
        self._check_open()

        def build(st: StoreState) -> list[EventCommit]:
            e = self._entry(st, model_id)
            if kind in ("delete", "undelete") and e.deleted == deleted:
                return []
            target = version or e.head_version
            return [EventCommit(model_id, e.seq + 1, kind, target, self._now(), "",
                                e.deleted if deleted is None else deleted, dict(tags or {}))]

        self.ledger.commit(build)

    def set_tags(self: ModelStore, model_id: str, tags: dict[str, str | None], version: int | None = None) -> None:
        """Set (or, with value None, remove) tags on a version (default: the latest)."""
        row = self._row(model_id, version)
        for k, v in tags.items():
            if not isinstance(k, str) or not k or (v is not None and not isinstance(v, str)):
                raise InvalidMetadataError(f"tags are str -> str (or None to remove), got {k!r}: {v!r}")
        self._event(model_id, "tag", deleted=None, version=row.version, tags=tags)
