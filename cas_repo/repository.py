"""ModelStore: the synchronous core — versioned save, load, rollback, delete, history.

A ModelStore is a composition of role objects; each public method checks the store is
open and delegates to one operation:

- ``objects`` (:class:`~cas_repo.objects.ObjectStore`): packs of content-addressed
  entries over a backend (folder or S3);
- ``ledger`` (:class:`~cas_repo.log.ledger.Ledger`): the log, folded into the current
  state, and the commit loop;
- ``reader`` (:class:`~cas_repo.loading.VersionReader`): a version's model, every byte
  verified;
- ``catalog`` (:class:`~cas_repo.catalog.Catalog`): the local DuckDB index, opened on
  first query and caught up by an :class:`~cas_repo.catalog.feed.IndexFeeder`.

The operations live in modules that take what they need and never import this one:
:mod:`.saving`, :mod:`.loading`, :mod:`.lookup`, :mod:`.edits`, :mod:`.aliases`,
:mod:`.queries`, :mod:`.as_of`. Saves and loads never touch DuckDB: the index is brought
up to date before a query (history, SQL, audit, maintenance) and rebuilt by itself when
lost or damaged.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import aliases, comparison, edits, lookup, queries, saving, search
from .catalog.paths import index_path
from .errors import StoreError
from .follow import Change, ChangeFilter, changes
from .loading import VersionReader
from .log.ledger import Ledger
from .log.legacy import legacy_history
from .metadata import ModelMetadata, utc
from .objects import ObjectStore, open_backend
from .rows import to_metadata
from .sealing import StoreKey

if TYPE_CHECKING:
    import pyarrow as pa

    from .as_of import StoreAsOf
    from .catalog import Catalog
    from .catalog.ranking import Leaderboard
    from .catalog.values import AliasChange, AliasPointer, Event, ExportReport, Lineage, MetricRecord, StoreStats
    from .filters import Filter
    from .qlib_support.recorder import RecorderMirror

DEFAULT_ROOT = "data/cas"


class ModelStore:
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
            catalog locked open; to be removed in 0.2); saves and loads no longer touch
            the catalog.
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
        store_key = StoreKey.configured(key)
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
        self.ledger = Ledger(self.objects.backend, store_key, legacy=partial(legacy_history, self.objects, store_key))
        self.reader = VersionReader(self.ledger, self.objects)
        self._catalog_path = Path(catalog).absolute() if catalog is not None else index_path(self.url)
        self._lock_timeout = lock_timeout
        self._catalog: Catalog | None = None
        self._closed = False
        self.recorder: RecorderMirror | None = None
        if use_qlib_recorder:
            from .qlib_support.recorder import RecorderMirror  # qlib itself loads on first save

            self.recorder = RecorderMirror()

    # -- lifecycle ---------------------------------------------------------------------

    def _now(self) -> datetime:
        return utc(self._clock()) if self._clock else datetime.now(UTC)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed; open a new ModelStore")

    @property
    def catalog(self) -> Catalog:
        """The local DuckDB index (opened on first use, caught up on every session)."""
        self._check_open()
        if self._catalog is None:
            from .catalog import Catalog
            from .catalog.feed import IndexFeeder

            self._catalog_path.parent.mkdir(parents=True, exist_ok=True)
            self._catalog = Catalog(self._catalog_path, lock_timeout=self._lock_timeout,
                                    feeder=IndexFeeder(self.ledger))
        return self._catalog

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

    def checkpoint(self) -> int:
        """Store a checkpoint of the log's fold now (new processes start from it); its position."""
        self._check_open()
        return self.ledger.write_checkpoint()

    # -- saving and editing history ---------------------------------------------------------

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
        self._check_open()
        return saving.save_model(self.ledger, self.objects, self._now, model, metadata, dataset=dataset,
                                 recorder=self.recorder)

    def rollback(self, model_id: str, to_version: int) -> int:
        """Append a new version whose content and metadata are those of ``to_version``.

        Costs one small commit: the content is shared with ``to_version``.

        Returns:
            The number of the new version.

        Raises:
            ModelNotFoundError: no such model or version. ModelDeletedError: undelete first.
            ModelPurgedError / IntegrityError: the target's content is gone (gc'd or damaged).
        """
        self._check_open()
        return edits.rollback(self.ledger, self.objects, self._now, model_id, to_version)

    def delete_model(self, model_id: str) -> None:
        """Tombstone ``model_id``: it leaves ``load_model``/``list_models``; bytes stay until gc.

        Deleting a deleted model does nothing. Raises ModelNotFoundError for an unknown id.
        """
        self._check_open()
        edits.delete_model(self.ledger, self._now, model_id)

    def undelete_model(self, model_id: str) -> None:
        """Bring back a tombstoned model (its latest version is live again)."""
        self._check_open()
        edits.undelete_model(self.ledger, self._now, model_id)

    def set_tags(self, model_id: str, tags: dict[str, str | None], version: int | None = None) -> None:
        """Set (or, with value None, remove) tags on a version (default: the latest)."""
        self._check_open()
        edits.set_tags(self.ledger, self._now, model_id, tags, version)

    def log_metrics(self, model_id: str, metrics: Mapping[str, float], version: int | None = None) -> int:
        """Record metric values of a version (default: the latest) that arrived after its save.

        ``model_id`` may be a reference: ``store.log_metrics("alpha@3", {"backtest_sharpe": 1.4})``.
        Each value is one log event with the time it arrived and who logged it; a value of a
        metric the version already has becomes its current value (``get_model_metadata``,
        ``v_metrics``) while the earlier one stays in ``v_metric_history``. As of a time
        before it arrived (:meth:`as_of`), the value is not there.

        Returns:
            The version the values were logged for.

        Raises:
            InvalidMetadataError: no values, or a value that is not a finite number.
            ModelNotFoundError / AliasNotFoundError: no such model, version or alias.
            ModelDeletedError: the model is tombstoned.
        """
        self._check_open()
        return edits.log_metrics(self.ledger, self._now, model_id, metrics, version)

    def set_alias(self, model_id: str, alias: str, version: int) -> int | None:
        """Point ``alias`` of ``model_id`` at ``version`` (one log commit; no model bytes).

        Returns:
            The version the alias pointed at before (None: it is new). Setting it where it
            already points records nothing.

        Raises:
            InvalidAliasError: the alias name is not ``[a-z][a-z0-9_-]{0,63}``.
            AliasTargetError: no such version, or it was purged, or the model is tombstoned.
        """
        self._check_open()
        return aliases.set_alias(self.ledger, self._now, model_id, alias, version)

    def remove_alias(self, model_id: str, alias: str) -> int | None:
        """Remove ``alias`` of ``model_id``; returns the version it pointed at (None: it was not set).

        Raises:
            ModelNotFoundError: no such model.
        """
        self._check_open()
        return aliases.remove_alias(self.ledger, self._now, model_id, alias)

    # -- reading from the log ------------------------------------------------------------------

    def get_model_metadata(self, model_id: str, version: int | None = None) -> ModelMetadata:
        """Metadata of the latest live version (or of ``version``, even if deleted).

        ``model_id`` may also be a reference, ``"model@7"`` or ``"model@prod"`` (an alias).

        Raises:
            AliasNotFoundError: the alias is not set. InvalidAliasError: a malformed reference.
            ModelNotFoundError: unknown model_id or version (a ``FileNotFoundError``).
            ModelDeletedError: the model is tombstoned and no version was given.
        """
        self._check_open()
        return to_metadata(lookup.current_row(self.ledger, model_id, version))

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
        self._check_open()
        row = lookup.current_row(self.ledger, model_id, version)
        return self.reader.load(row), to_metadata(row)

    def load_models(self, model_ids: Iterable[str], *, max_workers: int = 4) -> list[tuple[Any, ModelMetadata]]:
        """Load several models (latest versions) with a small thread pool, in order."""
        self._check_open()
        rows = [lookup.current_row(self.ledger, m, None) for m in model_ids]
        return [(m, to_metadata(r)) for m, r in zip(self.reader.load_many(rows, max_workers), rows)]

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

    def list_models(self, experiment_name: str | None = None, model_type: str | None = None,
                    include_deleted: bool = False) -> list[ModelMetadata]:
        """The latest version of each model, newest first; tombstoned ones only on request."""
        self._check_open()
        with self.ledger.current() as st:
            rows = lookup.heads(st, experiment_name, model_type, include_deleted)
        return [to_metadata(r) for r in rows]

    def aliases(self, model_id: str) -> dict[str, int]:
        """The aliases of ``model_id`` as they stand, name -> version (sorted by name).

        Raises:
            ModelNotFoundError: no such model.
        """
        self._check_open()
        with self.ledger.current() as st:
            return lookup.aliases_of(st, model_id)

    def log_position(self) -> int:
        """The position of the newest commit in the store's log (0: empty), as folded now."""
        self._check_open()
        return self.ledger.refresh()

    def follow(self, after: int | None = None, *, models: str | Iterable[str] | None = None,
               kinds: str | Iterable[str] | None = None, aliases: str | Iterable[str] | None = None,
               poll: float = 0.5, stop: threading.Event | None = None,
               idle_timeout: float | None = None) -> Iterator[Change]:
        """Every change of the store after log position ``after``, in log order, then each new one as it lands.

        One :class:`~cas_repo.follow.Change` per admitted operation (docs/watch.md). Between
        looks it sleeps ``poll`` seconds; each look is one request to the store.

        Args:
            after: a log position (0: from the beginning; None: from now on, only new changes).
            models: model ids or glob patterns (``"lgbm_*"``). kinds: change kinds (``"save"``,
                ``"alias"``…, see ``cas_repo.follow.KINDS``). aliases: alias names or patterns:
                only the moves of those aliases. Every filter given must match.
            stop: set it (from any thread) to end the iteration at its next look.
            idle_timeout: end after this many seconds without a new commit (0: once caught up).

        Raises:
            InvalidWatchFilterError: an unknown kind, or ``after`` negative or past the log's end.
        """
        self._check_open()
        return changes(self.ledger, after, wanted=ChangeFilter.of(models, kinds, aliases), poll=poll, stop=stop,
                       idle_timeout=idle_timeout)

    # -- reading from the index ----------------------------------------------------------------

    def history(self, model_id: str) -> list[ModelMetadata]:
        """Every version of ``model_id``, oldest first (``deleted`` reflects the model now).

        Raises:
            ModelNotFoundError: no such model_id.
        """
        return queries.history(self.catalog, model_id)

    def events(self, model_id: str) -> list[Event]:
        """Every event of ``model_id``: saves, rollbacks, deletes, undeletes and tag changes.

        Raises:
            ModelNotFoundError: no such model_id.
        """
        return queries.events(self.catalog, model_id)

    def all_aliases(self) -> list[AliasPointer]:
        """Every alias set in the store (model, alias, version, when and by whom it last moved)."""
        return queries.all_aliases(self.catalog)

    def metric_history(self, model_id: str, version: int | None = None) -> list[MetricRecord]:
        """Every metric value recorded for ``model_id`` (or for one version: ``"m@3"``, ``"m@prod"``
        or ``version``), in the order recorded: each save's values, then each value logged
        later (:meth:`log_metrics`) with when it arrived and who logged it.

        Raises:
            ModelNotFoundError: no such model or version. AliasNotFoundError: no such alias.
        """
        if "@" in model_id or version is not None:
            md = self.get_model_metadata(model_id, version)
            model_id, version = md.model_id, md.saved_version()
        return queries.metric_history(self.catalog, model_id, version)

    def alias_history(self, model_id: str, alias: str | None = None) -> list[AliasChange]:
        """Every recorded move of ``model_id``'s aliases (or of one), in log order."""
        return queries.alias_history(self.catalog, model_id, alias)

    def lineage(self, model_id: str, version: int | None = None) -> Lineage:
        """Ancestors and descendants of a version through parent and rollback edges.

        Give ``(model_id, version)`` or one reference, ``"model@7"`` / ``"model@prod"``.

        Raises:
            ModelNotFoundError: no such version. AliasNotFoundError: no such alias.
        """
        return queries.lineage(self.catalog, self.get_model_metadata(*queries.lineage_target(model_id, version)))

    def diff(self, a: str | tuple[str, int], b: str | tuple[str, int]) -> queries.VersionDiff:
        """Compare two versions (``"model@3"``, ``"model@prod"`` or ``(model_id, version)``): hyperparameters,
        metrics, and content bytes shared and added (``.content.shared_fraction``).

        Raises:
            ModelNotFoundError: either version does not exist.
        """
        return queries.diff(self.catalog, self.get_model_metadata(*queries.diff_side(a)),
                            self.get_model_metadata(*queries.diff_side(b)))

    def search_versions(self, where: str | Filter | None = None, order_by: str | Sequence[str] | None = None,
                        limit: int | None = None, include_deleted: bool = False) -> list[ModelMetadata]:
        """Every version matching ``where``, an MLflow-style filter (docs/search.md), one per version.

        ``where``: ``"metrics.IC > 0.03 and params.num_leaves = 63 and tags.stage = 'prod'"``
        (AND only; ``metrics.`Rank IC``` for names with spaces). ``order_by``: keys such as
        ``["metrics.IC DESC", "created_at"]``; versions lacking a key sort last; by default
        the newest save first. Metrics are each version's current ones. Versions of
        tombstoned models only with ``include_deleted``.

        Raises:
            InvalidFilterError: the filter or an order key is malformed (names the position).
        """
        return search.search_versions(self.catalog, where, order_by, limit, include_deleted)

    def search_models(self, where: str | Filter | None = None, order_by: str | Sequence[str] | None = None,
                      limit: int | None = None, include_deleted: bool = False) -> list[ModelMetadata]:
        """Like :meth:`search_versions`, over each model's newest version only (what ``cas-repo ls`` lists)."""
        return search.search_versions(self.catalog, where, order_by, limit, include_deleted, heads_only=True)

    def leaderboard(self, metric: str, experiment: str | None = None, higher_is_better: bool = True,
                    where: str | Filter | None = None, limit: int | None = None,
                    include_deleted: bool = False) -> Leaderboard:
        """Per model, its best version by ``metric`` (of those matching ``where``), best model first.

        Each standing holds the model, version, value, that version's other metrics and the
        aliases pointing at it.

        Raises:
            InvalidFilterError: the filter is malformed.
        """
        return search.leaderboard(self.catalog, metric, experiment, higher_is_better, where, limit, include_deleted)

    def compare(self, refs: Sequence[str | tuple[str, int]],
                lower_is_better: Iterable[str] = ()) -> comparison.Comparison:
        """Two or more versions side by side (``"model@3"``, ``"model@prod"`` or ``(model_id, version)``,
        across models): metrics with the best marked (highest, unless named in ``lower_is_better``),
        the hyperparameters that differ, and the chunk bytes each pair shares.

        Raises:
            ModelNotFoundError / AliasNotFoundError: a version does not exist.
            InvalidMetadataError: fewer than two versions, or a reference without a version.
        """
        mds = [self.get_model_metadata(*queries.diff_side(r)) for r in refs]
        return comparison.compare(self.catalog, mds, lower_is_better)

    def stats(self) -> StoreStats:
        """Logical vs physical bytes of the whole store (see ``cas-repo audit`` for detail)."""
        return queries.stats(self.catalog)

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run one read-only SQL query over the catalog views (docs/sql.md).

        Use ``?`` placeholders with a list, or ``$name`` with a dict: values are bound,
        never spliced into the text. ``.to_pandas()`` on the result gives a DataFrame.

        Raises:
            ReadOnlyQueryError: the query would write or change the session.
            QueryError: the query is malformed or fails.
        """
        return queries.sql(self.catalog, query, params)

    def export(self, directory: str | os.PathLike[str]) -> ExportReport:
        """Write every view as Parquet under ``directory`` from one consistent snapshot."""
        return queries.export(self.catalog, directory)

    def as_of(self, at: datetime | str) -> StoreAsOf:
        """The store as it stood at ``at``: ``.list_models()``, ``.load_model()``, ``.models()``.

        ``at`` is a datetime (naive = local time) or ISO 8601 text; it is inclusive.
        """
        from .as_of import StoreAsOf  # imports the catalog

        return StoreAsOf(self.catalog, self.reader.load, self.url, at)
