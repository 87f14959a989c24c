"""ModelStore: the synchronous core — versioned save, load, rollback, delete, history.

The object store holds everything: packs of content-addressed entries, and the log of
create-only commits that orders every event. A save is: serialize → chunk → hash (no
I/O) → write one pack with the entries the store lacks → create the next log commit,
holding the new version (on a lost race: fold the winner's commit in, re-check, retry).
A load is: fold in new commits → head → manifest → chunks, each verified. Neither
touches DuckDB: the catalog is a local index of the log, brought up to date before a
query (history, SQL, audit, maintenance) and rebuilt by itself when lost or damaged.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import faults
from .aliases import AliasMixin
from .catalog.values import SaveCommit, StoreStats, VersionRow
from .content import Content, from_content, to_content
from .digest import Digest, hash_bytes
from .edits import EditsMixin
from .errors import (
    AliasNotFoundError,
    IntegrityError,
    ModelDeletedError,
    ModelNotFoundError,
    ModelPurgedError,
    ObjectNotFoundError,
    StoreError,
)
from .location import Location
from .log.ledger import Ledger
from .log.state import ModelEntry, StoreState, version_row
from .manifest import Manifest
from .metadata import ModelMetadata, check_metadata, parse_ref, split_ref, utc, validate_model_id, validate_version
from .objects import ObjectStore, open_backend
from .objects.keys import parse_pack_key
from .objects.store import NewEntry
from .queries import QueryMixin
from .rows import metadata_json, packs_of, to_metadata
from .sealing import StoreKey

if TYPE_CHECKING:
    from .catalog import Catalog, Session

log = logging.getLogger(__name__)

DEFAULT_ROOT = "data/cas"
CATALOG_FILE = "catalog.duckdb"
INDEX_ENV = "CAS_REPO_INDEX_DIR"


def default_index_dir() -> Path:
    """Where catalog indexes live unless told: ``$CAS_REPO_INDEX_DIR``, else the user's cache."""
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cas-repo" / "index"


def index_path(store_url: str) -> Path:
    """The default catalog file of the store at ``store_url`` (one folder per store, per user)."""
    return default_index_dir() / hash_bytes(store_url.encode()).hex[:32] / CATALOG_FILE


class ModelStore(EditsMixin, AliasMixin, QueryMixin):
    """A versioned, content-addressed store of models (the synchronous core).

    Any number of threads, processes and machines may use one store at once: every
    change is a create-only commit in the store's log, and every read first folds in
    the commits made since its last look.

    Args:
        root: store folder (default ``data/cas``), or ``s3://bucket/prefix``.
        catalog: path of this process's DuckDB index of the store (default: one per store
            under ``$CAS_REPO_INDEX_DIR`` or ``~/.cache/cas-repo/index``). It is derived
            from the log; deleting it only costs a rebuild.
        exclusive: ignored (kept for callers of the first release, where it kept the
            catalog locked open); saves and loads no longer touch the catalog.
        lock_timeout: seconds to wait for the local index's file lock.
        backend_options: passed to the object backend (e.g. ``fsync=False``, S3 settings).
        use_qlib_recorder: also log every save to Qlib's Recorder (dual track; needs
            ``qlib.init()``); see :mod:`cas_repo.qlib_support.recorder`.
        clock: returns the time events are recorded at (default: the system clock); a
            naive datetime is taken as local time. Lets imports and tests set history times.
        key: secret for keyed integrity (default: ``CAS_REPO_KEY``, else none): commits are
            sealed, and one whose seal does not verify is refused before it is used.
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
        if exclusive:
            warnings.warn("ModelStore(exclusive=True) has no effect any more: saves and loads do not use the "
                          "catalog", DeprecationWarning, stacklevel=2)
        self._key = StoreKey.configured(key)
        text = os.fspath(root)
        if "://" in text and not text.startswith("file://"):
            objects_url = self.url = text
        else:
            local = Path(text.removeprefix("file://")).absolute()
            try:
                local.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store folder {local}: {exc.strerror or exc}") from exc
            objects_url, self.url = str(local / "objects"), str(local)
        self._clock = clock
        self.objects = ObjectStore(open_backend(objects_url, **(backend_options or {})))
        self.ledger = Ledger(self.objects.backend, self._key, legacy=self._legacy_history)
        self._catalog_path = Path(catalog).absolute() if catalog is not None else index_path(self.url)
        self._lock_timeout = lock_timeout
        self._catalog: Catalog | None = None
        self._closed = False
        self.recorder = None
        if use_qlib_recorder:
            from .qlib_support.recorder import RecorderMirror  # qlib itself loads on first save

            self.recorder = RecorderMirror()

    def _legacy_history(self) -> list:
        from .log.legacy import legacy_history

        return legacy_history(self.objects, self._key)

    # -- lifecycle ---------------------------------------------------------------------

    def _now(self) -> datetime:
        return utc(self._clock()) if self._clock else datetime.now(UTC)

    @property
    def catalog(self) -> Catalog:
        """The local DuckDB index (opened on first use, caught up on every session)."""
        if self._catalog is None:
            from .catalog import Catalog

            self._catalog_path.parent.mkdir(parents=True, exist_ok=True)
            self._catalog = Catalog(self._catalog_path, lock_timeout=self._lock_timeout, feeder=self._feed,
                                    current=self._indexed_all)
        return self._catalog

    def _feed(self, s: Session) -> bool:
        """Fold the commits the index lacks into it (the catalog calls this on every session).

        Returns False, folding nothing, when the index is not one of this store's states
        (another store's, or this one's before it was recreated): the catalog resets it.
        """
        from .catalog import feed

        store_id = self._store_id()
        have = feed.indexed(s)
        position = self.ledger.refresh()
        if have is not None and (have[0] != store_id or have[1] > position):
            if have[0] == store_id:
                # Commits are never deleted: an index ahead of the log means the log lost
                # its newest commits (a restore from an older copy, a deletion by hand).
                log.warning("the store's log at %s ends at commit %d but its index had folded commit %d: the "
                            "newest commits are gone (restored from an older copy?); run `cas-repo fsck`",
                            self.url, position, have[1])
            return False
        start = have[1] if have else 0
        batch: list = []
        for p, ops in self.ledger.commits_after(start):
            batch.append((p, ops))
            if len(batch) >= 2048:
                feed.fold(s, store_id, batch)
                batch = []
        feed.fold(s, store_id, batch)
        return True

    def _indexed_all(self, have: tuple[str, int] | None) -> bool:
        """Whether an index at ``have`` (store id, position) holds every commit of this store."""
        return have is not None and have[0] == self._store_id() and have[1] == self.ledger.refresh()

    def _store_id(self) -> str:
        """The store's identity: the digest of its first commit (empty store: "")."""
        if not getattr(self, "_sid", ""):
            data = self.objects.backend.get("log/" + "1".rjust(20, "0"))
            self._sid = hash_bytes(data).hex[:32] if data else ""
        return self._sid

    def close(self) -> None:
        """Release the backend; the store cannot be used afterwards."""
        self._closed = True
        if self._catalog is not None:
            self._catalog.close()
        self.objects.close()

    def __enter__(self) -> ModelStore:
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
            StoreError: I/O failed; no version was recorded.
        """
        if dataset is not None:
            from .qlib_support.lineage import add_dataset_lineage

            add_dataset_lineage(metadata, dataset)
        check_metadata(metadata)
        parents = tuple(parse_ref(p) for p in metadata.parents)
        content = to_content(model)
        with self.recorder.mirrored(model, metadata) if self.recorder else nullcontext():
            metadata.version = self._save(metadata, content, parents)
            metadata.digest = content.digest.hex
        return metadata.model_id

    def _save(self, md: ModelMetadata, content: Content, parents: tuple[tuple[str, int], ...]) -> int:
        self._check_open()
        needed = [d.hex for d in content.entries] + [content.digest.hex]
        with self.ledger.known() as st:
            have = st.locate(needed)
        # The bytes go out before the commit, outside the ledger's lock: a large save does
        # not hold up the loads of other threads.
        written = self.objects.write(self._entries(content, set(needed) - have.keys()))
        if faults.ARMED:
            faults.crash_point("objects-written")
        meta = metadata_json(md)
        meta_text = json.dumps(meta, sort_keys=True)

        def build(st: StoreState) -> list[SaveCommit]:
            nonlocal written
            # A gc may have dropped, since we looked, an entry we meant to reuse or even a
            # pack we just wrote (as unreferenced): store those entries again.
            written = [l for l in written if l.pack.hex not in st.forgotten]
            mine = {l.digest.hex: l for l in written}
            present = st.locate(needed)
            lacking = set(needed) - present.keys() - mine.keys()
            if lacking:
                # A new pack (its nonce makes its name new: never a forgotten one's).
                written += self.objects.write(self._entries(content, lacking))
            new = tuple(l for l in written if l.digest.hex not in present)
            # Each pack as written (entries found present meanwhile included), so the size
            # the log records is the file's.
            ours = {l.pack for l in new}
            e = st.models.get(md.model_id)
            return [SaveCommit(
                model_id=md.model_id, version=(e.head_version if e else 0) + 1, seq=(e.seq if e else 0) + 1,
                kind="save", rollback_of=None, manifest=content.digest.hex, record="", at=self._now(),
                created_at=md.created_at, experiment_name=md.experiment_name, model_type=md.model_type,
                qlib_recorder_id=md.qlib_recorder_id, metrics=md.metrics, hyperparameters=md.hyperparameters,
                lineage=md.lineage, metadata_json=meta_text, logical_size=content.manifest.size,
                new_bytes=sum(l.stored_size for l in new), tags=dict(md.tags), parents=parents,
                new_locations=new,
                manifest_chunks=(tuple((c.digest.hex, c.size) for c in content.manifest.chunks())
                                 if content.digest.hex not in present else None),
                new_packs=packs_of(list({(l.pack, l.digest): l for l in written if l.pack in ours}.values())),
            )]

        _, ops = self.ledger.commit(build)
        return ops[0].version

    @staticmethod
    def _entries(content: Content, digests: set[str]) -> list[NewEntry]:
        out = [e for d, e in content.entries.items() if d.hex in digests]
        if content.digest.hex in digests:
            out.append(content.manifest_entry)
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed; open a new ModelStore")

    # -- resolving versions ------------------------------------------------------------------

    def _entry(self, st: StoreState, model_id: str) -> ModelEntry:
        validate_model_id(model_id)
        e = st.models.get(model_id)
        if e is None:
            raise ModelNotFoundError(model_id)
        return e

    def _row_in(self, st: StoreState, model_id: str, version: int | None) -> VersionRow:
        """A version's row (the head when ``version`` is None) from the folded state.

        ``model_id`` may be a reference: ``model@7`` or ``model@alias`` (resolved on ``st``,
        so the version is the one the alias pointed at in this very state).
        """
        if "@" in model_id:
            model_id, version, alias = split_ref(model_id, version)
            if alias is not None:
                e = self._entry(st, model_id)
                if e.deleted:
                    raise ModelDeletedError(model_id)
                version = e.aliases.get(alias)
                if version is None:
                    raise AliasNotFoundError(model_id, alias)
        e = self._entry(st, model_id)
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
        commit = self.ledger.log.read(ref.position)
        op = next((o for o in (commit.ops if commit else ()) if isinstance(o, SaveCommit)
                   and o.model_id == model_id and o.version == version), None)
        if op is None:
            raise IntegrityError(f"log commit {ref.position} no longer holds version {version}: the log was "
                                 "altered; run `cas-repo fsck`", model_id=model_id, version=version)
        return version_row(op, e.deleted, ref.tags)

    def _row(self, model_id: str, version: int | None) -> VersionRow:
        self._check_open()
        with self.ledger.current() as st:
            return self._row_in(st, model_id, version)

    def get_model_metadata(self, model_id: str, version: int | None = None) -> ModelMetadata:
        """Metadata of the latest live version (or of ``version``, even if deleted).

        ``model_id`` may also be a reference, ``"model@7"`` or ``"model@prod"`` (an alias).

        Raises:
            AliasNotFoundError: the alias is not set. InvalidAliasError: a malformed reference.
            ModelNotFoundError: unknown model_id or version (a ``FileNotFoundError``).
            ModelDeletedError: the model is tombstoned and no version was given.
        """
        return to_metadata(self._row(model_id, version))

    # -- loading ---------------------------------------------------------------------------

    def load_model(self, model_id: str, version: int | None = None) -> tuple[Any, ModelMetadata]:
        """The model and metadata of the latest live version (or of ``version``).

        ``model_id`` may also be ``"model@7"`` or ``"model@prod"`` (an alias, resolved at
        this call; a tombstoned model serves nothing through its aliases). Every byte is
        verified against its digest before unpickling starts.

        Raises:
            ModelNotFoundError / ModelDeletedError: as :meth:`get_model_metadata`.
            ModelPurgedError: gc freed that version's content.
            IntegrityError: stored bytes were altered or lost (names model and version).
            UnsafePickleError: the pickle names a global outside the allowlist.
        """
        row = self._row(model_id, version)
        return self._load_row(row), to_metadata(row)

    def _load_row(self, row: VersionRow) -> Any:
        try:
            try:
                return self._assemble(row)
            except _PackGone:
                # A concurrent gc moved the entries and dropped the pack: its commit is in
                # the log now, so folding it in gives the new locations.
                self.ledger.refresh()
                return self._assemble(row)
        except _PackGone as gone:
            raise IntegrityError(f"pack {gone.pack} is missing from the object store", expected=gone.digest,
                                 actual="missing").with_version(row.model_id, row.version) from None
        except IntegrityError as exc:
            raise exc.with_version(row.model_id, row.version) from exc

    def _locate(self, digests: Sequence[Digest | str], row: VersionRow) -> list[Location]:
        # The state the row came from (a moved pack makes _load_row fold in and retry).
        with self.ledger.known() as st:
            found = st.locate(digests)
            if len(found) < len({d if isinstance(d, str) else d.hex for d in digests}):
                ref = st.models[row.model_id].versions[row.version - 1] if row.model_id in st.models else None
                if ref is not None and ref.mark == "purge":
                    raise ModelPurgedError(row.model_id, row.version, ref.mark_at)
        out = []
        for d in digests:
            h = d if isinstance(d, str) else d.hex
            if h not in found:
                raise IntegrityError("the store has no copy of an entry this version needs", expected=h,
                                     actual="missing")
            out.append(found[h])
        return out

    def _assemble(self, row: VersionRow) -> Any:
        manifest = Manifest.from_bytes(self._read(self._locate([row.manifest], row))[0])

        def read_into(digests: Sequence[Digest], views: Sequence[memoryview]) -> None:
            try:
                self.objects.read_into(self._locate(digests, row), views)
            except ObjectNotFoundError as exc:
                raise _PackGone(exc.key, digests[0].hex) from exc

        return from_content(manifest, lambda digests: self._read(self._locate(digests, row)), read_into)

    def _read(self, locs: Sequence[Location]) -> list[bytes | memoryview]:
        try:
            return self.objects.read_many(locs)
        except ObjectNotFoundError as exc:
            gone = parse_pack_key(exc.key)
            lost = next((l for l in locs if l.pack == gone), locs[0])
            raise _PackGone(exc.key, lost.digest.hex) from exc

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
        rows = [self._row(m, None) for m in ids]
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(ids)))) as pool:
            models = list(pool.map(self._load_row, rows))
        return [(m, to_metadata(r)) for m, r in zip(models, rows)]

    # -- listing -------------------------------------------------------------------------

    def list_models(self, experiment_name: str | None = None, model_type: str | None = None,
                    include_deleted: bool = False) -> list[ModelMetadata]:
        """The latest version of each model, newest first; tombstoned ones only on request."""
        self._check_open()
        with self.ledger.current() as st:
            rows = [e.head_row for e in st.models.values()
                    if (include_deleted or not e.deleted)
                    and (experiment_name is None or e.head_row.metadata["experiment_name"] == experiment_name)
                    and (model_type is None or e.head_row.metadata["model_type"] == model_type)]
        rows.sort(key=lambda r: r.model_id)
        rows.sort(key=lambda r: r.saved_at, reverse=True)
        return [to_metadata(r) for r in rows]

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

    def checkpoint(self) -> int:
        """Store a checkpoint of the log's fold now (new processes start from it); its position."""
        return self.ledger.write_checkpoint()


class _PackGone(Exception):
    def __init__(self, key: str, digest: str) -> None:
        self.pack, self.digest = key, digest
