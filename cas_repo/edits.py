"""Appending to a model's history without new content: rollback, delete, undelete, tags."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import faults
from .catalog import EventCommit, SaveCommit
from .digest import Digest, hash_bytes
from .errors import IntegrityError, InvalidMetadataError, ModelDeletedError, ModelNotFoundError
from .location import RECORD
from .manifest import EventRecord
from .metadata import parse_ref, validate_model_id, validate_version
from .objects.store import NewEntry
from .rows import metadata_json, packs_of, to_metadata

if TYPE_CHECKING:
    pass


class EditsMixin:
    """ModelStore's history edits; each is one catalog session and one small event record."""

    def rollback(self, model_id: str, to_version: int) -> int:
        """Append a new version whose content and metadata are those of ``to_version``.

        Costs one small event record: the content is shared with ``to_version``.

        Returns:
            The number of the new version.

        Raises:
            ModelNotFoundError: no such model or version. ModelDeletedError: undelete first.
            IntegrityError: the target's objects are gone (gc'd after a purge, or damaged).
        """
        validate_version(to_version)
        with self.catalog.session() as s:
            row = self._resolve(s, model_id, to_version)
            state = s.model_state(model_id)
            if state is None or state.deleted:
                raise ModelDeletedError(model_id)
            chunks = s.manifest_chunk_digests(row.manifest)
            if len(s.present([row.manifest, *chunks])) != len(set(chunks)) + 1:
                raise IntegrityError(f"version {to_version} has lost objects; it cannot be rolled back to",
                                     model_id=model_id, version=to_version)
            md = to_metadata(row)
            version, seq = state.head_version + 1, state.last_seq + 1
            now = self._now()
            meta = metadata_json(md)
            record = EventRecord("rollback", model_id, seq, version, now, Digest.from_hex(row.manifest),
                                 meta, tuple(md.parents), to_version)
            rbytes = self._record_bytes(record)
            rdig = hash_bytes(rbytes)
            locs = self.objects.write([NewEntry(rdig, RECORD, rbytes, compress=False)])
            s.commit_save(SaveCommit(
                model_id=model_id, version=version, seq=seq, kind="rollback", rollback_of=to_version,
                manifest=row.manifest, record=rdig.hex, at=now, created_at=md.created_at,
                experiment_name=md.experiment_name, model_type=md.model_type,
                qlib_recorder_id=md.qlib_recorder_id, metrics=md.metrics,
                hyperparameters=md.hyperparameters, lineage=md.lineage,
                metadata_json=json.dumps(meta, sort_keys=True), logical_size=row.logical_size, new_bytes=0,
                tags=md.tags, parents=tuple(parse_ref(p) for p in md.parents), new_locations=tuple(locs),
                new_packs=packs_of(locs),
            ))
            return version

    def delete_model(self, model_id: str) -> None:
        """Tombstone ``model_id``: it leaves ``load_model``/``list_models``; bytes stay until gc.

        Deleting a deleted model does nothing. Raises ModelNotFoundError for an unknown id.
        """
        self._event(model_id, "delete", deleted=True)

    def undelete_model(self, model_id: str) -> None:
        """Bring back a tombstoned model (its latest version is live again)."""
        self._event(model_id, "undelete", deleted=False)

    def _event(self, model_id: str, kind: str, *, deleted: bool,
               version: int | None = None, tags: dict[str, str | None] | None = None) -> None:
        validate_model_id(model_id)
        with self.catalog.session() as s:
            state = s.model_state(model_id)
            if state is None:
                raise ModelNotFoundError(model_id)
            if kind in ("delete", "undelete") and state.deleted == deleted:
                return
            seq = state.last_seq + 1
            target = version or state.head_version
            now = self._now()
            record = EventRecord(kind, model_id, seq, target, now, tags=tags or {})
            rbytes = self._record_bytes(record)
            rdig = hash_bytes(rbytes)
            locs = self.objects.write([NewEntry(rdig, RECORD, rbytes, compress=False)])
            if faults.ARMED:
                faults.crash_point("objects-written")
            s.commit_event(EventCommit(model_id, seq, kind, target, now, rdig.hex, deleted,
                                       tags or {}, tuple(locs), packs_of(locs)))
            if faults.ARMED:
                faults.crash_point("after-commit")

    def set_tags(self, model_id: str, tags: dict[str, str | None], version: int | None = None) -> None:
        """Set (or, with value None, remove) tags on a version (default: the latest)."""
        row = self._row(model_id, version)
        for k, v in tags.items():
            if not isinstance(k, str) or not k or (v is not None and not isinstance(v, str)):
                raise InvalidMetadataError(f"tags are str -> str (or None to remove), got {k!r}: {v!r}")
        self._event(model_id, "tag", deleted=row.deleted, version=row.version, tags=tags)

