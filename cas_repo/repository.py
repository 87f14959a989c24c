"""ModelStore: the synchronous core — versioned save, load, rollback, delete, history.

A save is: serialize → chunk → hash (no I/O, no lock) → under the catalog lock: find
which chunks are new, allocate version n+1, write one pack with the new chunks, the
manifest (if new) and the event record → commit the catalog rows in one transaction.
Objects are durable before the catalog mentions them, so a crash at any point leaves
at most unreferenced objects.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import faults
from .catalog import Catalog, SaveCommit, Session, StoreStats, VersionRow
from .catalog.catalog import CATALOG_FILE
from .catalog.maintenance import purged_at
from .content import Content, from_content, to_content
from .digest import Digest, hash_bytes
from .errors import (CatalogCorruptError, ConcurrentModificationError, IntegrityError,
                     ModelDeletedError, ModelNotFoundError, ModelPurgedError, ObjectNotFoundError,
                     StoreError)
from .location import RECORD, Location
from .manifest import EventRecord, Manifest
from .metadata import ModelMetadata, check_metadata, parse_ref, utc, validate_model_id, validate_version
from .objects import ObjectStore, open_backend
from .objects.keys import parse_pack_key
from .objects.store import NewEntry
from .queries import QueryMixin
from .rows import batch_to_metadata, metadata_json, packs_of, to_metadata
from .edits import EditsMixin
from .sealing import StoreKey

DEFAULT_ROOT = "data/cas"
# Saves with more content than this write their chunks before taking the catalog lock,
# so one large save does not stall every other writer for the length of its I/O.
PREWRITE_BYTES = 8 << 20
_COMMIT_RETRIES = 5


class ModelStore(EditsMixin, QueryMixin):
    """A versioned, content-addressed store of models (the synchronous core).

    Args:
        root: store folder (default ``data/cas``), or ``s3://bucket/prefix`` with ``catalog``.
        catalog: path of the DuckDB catalog file (default ``<root>/catalog.duckdb``).
        exclusive: keep the catalog open and locked for this store's lifetime (fastest;
            other processes wait until :meth:`close`). Default: a short session per call,
            so many processes can share the store.
        lock_timeout: seconds to wait for the catalog lock before ``CatalogLockedError``.
        backend_options: passed to the object backend (e.g. ``fsync=False``, S3 settings).
        use_qlib_recorder: also log every save to Qlib's Recorder (dual track; needs
            ``qlib.init()``); see :mod:`cas_repo.qlib_support.recorder`.
        clock: returns the time events are recorded at (default: the system clock); a
            naive datetime is taken as local time. Lets imports and tests set history times.
        key: secret for keyed integrity (default: ``CAS_REPO_KEY``, else none): records are
            sealed on save and a load refuses any version whose seal does not verify.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        *,
        catalog: str | os.PathLike[str] | None = None,
        exclusive: bool = False,
        lock_timeout: float = 60.0,
        backend_options: dict[str, Any] | None = None,
        use_qlib_recorder: bool = False,
        clock: Callable[[], datetime] | None = None,
        key: str | bytes | None = None,
    ) -> None:
        self._key = StoreKey.configured(key)
        text = os.fspath(root)
        remote = "://" in text and not text.startswith("file://")
        if remote:
            if catalog is None:
                raise StoreError(f"a remote store ({text}) needs a local catalog path: "
                                 "ModelStore(url, catalog='path/to/catalog.duckdb'), or "
                                 "`cas-repo --catalog PATH` / CAS_REPO_CATALOG on the command line")
            objects_url = text
        else:
            local = Path(text.removeprefix("file://"))
            local.mkdir(parents=True, exist_ok=True)
            objects_url = str(local / "objects")
            catalog = catalog or local / CATALOG_FILE
        self.url = text
        self._clock = clock
        catalog_path = Path(catalog).absolute()
        catalog_path.parent.mkdir(parents=True, exist_ok=True)
        self.objects = ObjectStore(open_backend(objects_url, **(backend_options or {})))
        if not catalog_path.exists() and next(self.objects.list_packs(), None) is not None:
            # A new, empty catalog over old packs would hand out version numbers again.
            raise CatalogCorruptError(str(catalog_path), "it is missing, but the object store holds packs")
        self.catalog = Catalog(catalog_path, exclusive=exclusive, lock_timeout=lock_timeout)
        self.recorder = None
        if use_qlib_recorder:
            from .qlib_support.recorder import RecorderMirror  # qlib itself loads on first save

            self.recorder = RecorderMirror()

    # -- lifecycle ---------------------------------------------------------------------

    def _now(self) -> datetime:
        return utc(self._clock()) if self._clock else datetime.now(timezone.utc)

    def close(self) -> None:
        """Release the catalog (and its lock in exclusive mode) and the backend."""
        self.catalog.close()
        self.objects.close()

    def __enter__(self) -> "ModelStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- saving --------------------------------------------------------------------------

    def save_model(self, model: Any, metadata: ModelMetadata, *, dataset: Any = None) -> str:
        """Append version n+1 of ``metadata.model_id`` holding ``model``; returns the model_id.

        Fills ``metadata.version`` and ``metadata.digest`` in place (the seed's callers read
        ``model_id`` from the return value; newer callers may read the version too). Given
        the Qlib ``dataset`` the model was trained on, records its lineage (handler,
        segments, label, feature digest, library versions) in ``metadata.lineage``. With
        ``use_qlib_recorder``, the Recorder logs the model first and ``qlib_recorder_id``
        is set from it.

        Raises:
            InvalidModelIdError / InvalidMetadataError: nothing was written.
            SerializationError: the model cannot be pickled; nothing was written.
            QlibRecorderError: the Recorder failed (or qlib is not initialised); nothing saved.
            StoreError / CatalogError: I/O failed; no version was recorded.
        """
        if dataset is not None:
            from .qlib_support.lineage import add_dataset_lineage

            add_dataset_lineage(metadata, dataset)
        check_metadata(metadata)
        parents = tuple(parse_ref(p) for p in metadata.parents)
        content = to_content(model)
        with self.recorder.mirrored(model, metadata) if self.recorder else nullcontext():
            metadata.version = self._commit(metadata, content, parents, kind="save")
            metadata.digest = content.digest.hex
        return metadata.model_id

    def _commit(self, md: ModelMetadata, content: Content, parents: tuple[tuple[str, int], ...],
                kind: str, rollback_of: int | None = None) -> int:
        needed = [d.hex for d in content.entries] + [content.digest.hex]
        prewritten: list[Location] = []
        if content.manifest.size > PREWRITE_BYTES:
            with self.catalog.session() as s:
                present = s.present(needed)
            todo = [e for d, e in content.entries.items() if d.hex not in present]
            if content.digest.hex not in present:
                todo.append(content.manifest_entry)
            prewritten = self.objects.write(todo)
        done = {l.digest.hex for l in prewritten}
        for attempt in range(_COMMIT_RETRIES):
            try:
                with self.catalog.session() as s:
                    if prewritten:
                        prewritten, done = self._still_stored(prewritten)
                    # Presence is (re-)checked under the lock: a gc may have dropped an
                    # unreferenced chunk since we looked, and then this save stores it again.
                    state, present = s.state_and_present(md.model_id, needed)
                    missing = [e for d, e in content.entries.items()
                               if d.hex not in present and d.hex not in done]
                    new_manifest = content.digest.hex not in present
                    if new_manifest and content.digest.hex not in done:
                        missing.append(content.manifest_entry)
                    version = (state.head_version if state else 0) + 1
                    seq = (state.last_seq if state else 0) + 1
                    now = self._now()
                    meta = metadata_json(md)
                    record = EventRecord(kind, md.model_id, seq, version, now, content.digest, meta,
                                         tuple(f"{m}@{v}" for m, v in parents), rollback_of)
                    rbytes = self._record_bytes(record)
                    rdig = hash_bytes(rbytes)
                    locs = self.objects.write(missing + [NewEntry(rdig, RECORD, rbytes, compress=False)])
                    if faults.ARMED:
                        faults.crash_point("objects-written")
                    # A prewritten entry another writer committed meanwhile keeps its first location.
                    new = tuple(l for l in prewritten if l.digest.hex not in present) + tuple(locs)
                    s.commit_save(SaveCommit(
                        model_id=md.model_id, version=version, seq=seq, kind=kind,
                        rollback_of=rollback_of, manifest=content.digest.hex, record=rdig.hex, at=now,
                        created_at=md.created_at, experiment_name=md.experiment_name,
                        model_type=md.model_type, qlib_recorder_id=md.qlib_recorder_id,
                        metrics=md.metrics, hyperparameters=md.hyperparameters, lineage=md.lineage,
                        metadata_json=json.dumps(meta, sort_keys=True), logical_size=content.manifest.size,
                        new_bytes=sum(l.stored_size for l in new if l.kind != RECORD),
                        tags=md.tags, parents=parents, new_locations=new,
                        manifest_chunks=(tuple((c.digest.hex, c.size) for c in content.manifest.chunks())
                                         if new_manifest else None),
                        new_packs=packs_of(new),
                    ))
                    if faults.ARMED:
                        faults.crash_point("after-commit")
                    return version
            except ConcurrentModificationError:
                if attempt == _COMMIT_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _record_bytes(self, record: EventRecord) -> bytes:
        raw = record.to_bytes()
        return self._key.seal(raw) if self._key else raw

    def _still_stored(self, prewritten: list[Location]) -> tuple[list[Location], set[str]]:
        """The prewritten locations whose packs still exist (checked under the catalog lock).

        A prewritten pack can equal, byte for byte, an old unreferenced pack (a crashed save
        of the same content); ``put`` then only refreshed its mtime, and a gc that had already
        judged it by the old mtime may have deleted it. gc deletes packs under the catalog
        lock, so a check made under the lock is final.
        """
        gone = set()
        for pack in {l.pack for l in prewritten}:
            try:
                self.objects.pack_info(pack)
            except ObjectNotFoundError:
                gone.add(pack)
        kept = [l for l in prewritten if l.pack not in gone]
        return kept, {l.digest.hex for l in kept}

    # -- loading ---------------------------------------------------------------------------

    @staticmethod
    def _resolve(s: Session, model_id: str, version: int | None) -> VersionRow:
        validate_model_id(model_id)
        if version is not None:
            validate_version(version)
        row = s.version_row(model_id, version)
        if row is None:
            raise ModelNotFoundError(model_id, version if s.model_state(model_id) else None)
        if version is None and row.deleted:
            raise ModelDeletedError(model_id)
        return row

    def _row(self, model_id: str, version: int | None) -> VersionRow:
        validate_model_id(model_id)
        with self.catalog.session() as s:
            return self._resolve(s, model_id, version)

    def get_model_metadata(self, model_id: str, version: int | None = None) -> ModelMetadata:
        """Metadata of the latest live version (or of ``version``, even if deleted).

        Raises:
            ModelNotFoundError: unknown model_id or version (a ``FileNotFoundError``).
            ModelDeletedError: the model is tombstoned and no version was given.
        """
        return to_metadata(self._row(model_id, version))

    def load_model(self, model_id: str, version: int | None = None) -> tuple[Any, ModelMetadata]:
        """The model and metadata of the latest live version (or of ``version``).

        Every byte is verified against its digest before unpickling starts.

        Raises:
            ModelNotFoundError / ModelDeletedError: as :meth:`get_model_metadata`.
            IntegrityError: stored bytes were altered or lost (names model and version).
            UnsafePickleError: the pickle names a global outside the allowlist.
        """
        validate_model_id(model_id)
        # One catalog session for the row and the locations: in shared mode each session
        # costs a DuckDB open (~12 ms).
        with self.catalog.session() as s:
            row = self._resolve(s, model_id, version)
            locations = s.content_locations(row.manifest)
            sealed = s.sealed_record(row.model_id, row.version) if self._key else None
        return self._load_row(row, locations, sealed), to_metadata(row)

    def _load_row(self, row: VersionRow,
                  locations: tuple[Location | None, dict[str, Location]] | None = None,
                  sealed: tuple[str, Location | None, dict[str, Any]] | None = None) -> Any:
        if locations is None or (self._key and sealed is None):
            with self.catalog.session() as s:
                locations = s.content_locations(row.manifest)
                sealed = s.sealed_record(row.model_id, row.version) if self._key else None
        mloc, chunk_locs = locations
        if mloc is None:
            with self.catalog.session() as s:
                purged = purged_at(s, row.model_id, row.version)
            if purged is not None:
                raise ModelPurgedError(row.model_id, row.version, purged)
        try:
            if self._key:
                self._check_seal(row, *sealed)
            if mloc is None:
                raise IntegrityError("the catalog has no location for the manifest", expected=row.manifest,
                                     actual="missing")
            manifest = Manifest.from_bytes(self._read([mloc])[0])

            def locate(digests: Sequence[Digest]) -> list[Location]:
                locs = []
                for d in digests:
                    loc = chunk_locs.get(d.hex)
                    if loc is None:
                        raise IntegrityError("the catalog has no location for a chunk",
                                             expected=d.hex, actual="missing")
                    locs.append(loc)
                return locs

            def read_into(digests: Sequence[Digest], views: Sequence[memoryview]) -> None:
                try:
                    self.objects.read_into(locate(digests), views)
                except ObjectNotFoundError as exc:
                    raise IntegrityError(f"a pack is missing from the object store ({exc.key})",
                                         expected=digests[0].hex, actual="missing") from exc

            return from_content(manifest, lambda digests: self._read(locate(digests)), read_into)
        except IntegrityError as exc:
            raise exc.with_version(row.model_id, row.version) from exc

    def _check_seal(self, row: VersionRow, record: str, rloc: Location | None,
                    metadata: dict[str, Any]) -> None:
        """The version's record verifies under the key and says what the catalog row says."""
        if rloc is None:
            raise IntegrityError("the catalog has no location for the version's record",
                                 expected=record or "a record", actual="missing")
        data = self._read([rloc])[0]
        self._key.check(data)
        rec = EventRecord.from_bytes(data)
        claimed = (row.model_id, row.version, row.kind, row.manifest, metadata)
        sealed = (rec.model_id, rec.version, rec.kind, rec.manifest.hex if rec.manifest else None,
                  rec.metadata)
        names = ("model_id", "version", "kind", "manifest", "metadata")
        for name, said, vouched in zip(names, claimed, sealed):
            if said != vouched:
                raise IntegrityError(f"the catalog's {name} for this version differs from its sealed "
                                     "record: the catalog was altered",
                                     expected=str(vouched)[:64], actual=str(said)[:64])

    def _read(self, locs: Sequence[Location]) -> list[bytes | memoryview]:
        try:
            return self.objects.read_many(locs)
        except ObjectNotFoundError as exc:
            gone = parse_pack_key(exc.key)
            lost = next((l for l in locs if l.pack == gone), locs[0])
            raise IntegrityError(f"pack {lost.pack.hex} is missing from the object store",
                                 expected=lost.digest.hex, actual="missing") from exc

    def load_model_by_recorder(self, recorder_id: str,
                               artifact: str | None = None) -> tuple[Any, ModelMetadata]:
        """The model and metadata saved from Qlib recorder run ``recorder_id``.

        Finds versions written by a dual-track save or ``import-mlruns``; ``artifact``
        picks one object when the run saved several.

        Raises:
            RecorderNotFoundError: no version records that run (a ``FileNotFoundError``).
            AmbiguousRecorderError: the run saved several objects and no artifact was named.
        """
        from .qlib_support.recorder import find_recorder_version

        return self.load_model(*find_recorder_version(self, recorder_id, artifact))

    def load_models(self, model_ids: Iterable[str], *, max_workers: int = 4) -> list[tuple[Any, ModelMetadata]]:
        """Load several models (latest versions) with a small thread pool, in order."""
        ids = list(model_ids)
        if not ids:
            return []
        with self.catalog.session() as s:
            rows = [self._resolve(s, m, None) for m in ids]
            locations = [s.content_locations(r.manifest) for r in rows]
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(ids)))) as pool:
            models = list(pool.map(self._load_row, rows, locations))
        return [(m, to_metadata(r)) for m, r in zip(models, rows)]

    # -- listing -------------------------------------------------------------------------

    def list_models(self, experiment_name: str | None = None, model_type: str | None = None,
                    include_deleted: bool = False) -> list[ModelMetadata]:
        """The latest version of each model, newest first; tombstoned ones only on request."""
        with self.catalog.session() as s:
            return batch_to_metadata(s.head_batch(experiment_name, model_type, include_deleted))

    def history(self, model_id: str) -> list[ModelMetadata]:
        """Every version of ``model_id``, oldest first (``deleted`` reflects the model now).

        Raises:
            ModelNotFoundError: no such model_id.
        """
        validate_model_id(model_id)
        with self.catalog.session() as s:
            rows = s.history(model_id)
        if not rows:
            raise ModelNotFoundError(model_id)
        return [to_metadata(r) for r in rows]

    # -- accounting --------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Logical vs physical bytes of the whole store (see ``cas-repo audit`` for detail)."""
        with self.catalog.session() as s:
            return s.stats()
