"""Catalog sessions over one DuckDB file: the local, derived index of a store's log.

Saves and loads never come here. Queries (history, SQL, audit, maintenance plans) open
a short session under a file lock, after the store folds the log's new commits in.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import duckdb

from ..errors import CatalogCorruptError, CatalogError, CatalogFullError, ConcurrentModificationError
from ..location import Location
from ..log.state import VersionRow, parents_of
from .convert import aware_utc, location_of
from .lock import CatalogLock
from .migrations import migrate
from .values import StoreStats

logger = logging.getLogger(__name__)

# Users' SQL runs where it cannot write the catalog, touch files, or load code.
_READER_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}

# The head table's cached copy of each head version (migration 0002): one point query.
# Tags and parents are fetched as JSON text: converting MAP and LIST values to Python
# objects row by row cost DuckDB more than one json.loads of them all.
_HEAD_COLS = (
    "model_id, head_version, head_manifest, head_kind, head_rollback_of, head_saved_at, "
    "head_logical_size, head_created_at, deleted, coalesce(head_tags::JSON::VARCHAR, '{}'), "
    "coalesce(head_parents::JSON::VARCHAR, '[]'), experiment_name, model_type, "
    "head_qlib_recorder_id, head_hyperparameters, head_metrics, head_lineage, "
    "coalesce(head_logged::JSON::VARCHAR, '{}')"
)
# One head: its MAP and LIST converted directly are cheaper than casts to JSON text.
_HEAD_COLS_ONE = _HEAD_COLS.replace("coalesce(head_tags::JSON::VARCHAR, '{}')", "head_tags").replace(
    "coalesce(head_parents::JSON::VARCHAR, '[]')", "head_parents")

# Parents come from the metadata, not v.parents: fetching a LIST column row by row
# through the index cost more than the rest of a 1,000-version history together.
VERSION_COLS = (
    "v.model_id, v.version, v.manifest, v.kind, v.rollback_of, v.saved_at, v.logical_size, "
    "v.metadata_json, m.deleted, v.tags, v.record, coalesce(v.logged::JSON::VARCHAR, '{}')"
)


# From this many versions on, a model's rows are read by their row groups' min/max
# rather than through the model_id index (see cluster.py).
ZONE_SCAN_VERSIONS = 64


def _parse_many(texts: list[str]) -> list[Any]:
    # One parse of a JSON array is ~40% cheaper than a json.loads call per document.
    return json.loads("[" + ",".join(texts) + "]") if texts else []


# DuckDB reports damage in these words; such a catalog must never be used further.
_CORRUPTION = ("Corrupt database file", "not a valid DuckDB database", "Failure while replaying WAL",
               "Could not read enough bytes", "does not match stored checksum",
               "database has been invalidated")


# A full disk, in DuckDB's words (the OS's strerror inside them). It must be recognised
# before damage and conflicts: a checkpoint that fails for want of space reports "The
# database has been invalidated", and a commit that does "TransactionContext Error", and
# neither means the file is damaged or another writer was there. The file is intact (the
# rows are in its write-ahead log) and must stay where it is.
_DISK_FULL = ("No space left on device", "Disk quota exceeded")


def _is_corruption(exc: duckdb.Error) -> bool:
    text = str(exc)
    return not _is_disk_full(exc) and any(marker in text for marker in _CORRUPTION)


def _is_disk_full(exc: duckdb.Error) -> bool:
    text = str(exc)
    return any(marker in text for marker in _DISK_FULL)


def _full(path: Path | None, what: str, exc: duckdb.Error) -> CatalogFullError:
    return CatalogFullError(str(path) if path else "file", what, f"{type(exc).__name__}: {exc}")


def translate_error(exc: duckdb.Error, what: str, path: Path | None = None) -> CatalogError:
    """A DuckDB error as the catalog error a caller can act on (full disk, damage, conflict)."""
    if _is_disk_full(exc):
        return _full(path, what, exc)
    if _is_corruption(exc):
        return CatalogCorruptError(str(path) if path else "file", f"{what} failed: {exc}")
    if isinstance(exc, (duckdb.ConstraintException, duckdb.TransactionException)):
        return ConcurrentModificationError(f"{what} conflicted with another writer: {exc}")
    return CatalogError(f"{what} failed: {exc}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Feeder(Protocol):
    """What keeps an index caught up with its log (:class:`~cas_repo.catalog.feed.IndexFeeder`)."""

    def catch_up(self, s: Session) -> bool:
        """Fold in what the index lacks; False if it indexes another store (it is then reset)."""
        ...

    def is_current(self, have: tuple[str, int] | None) -> bool:
        """Whether an index at ``have`` (store id, position) holds every commit."""
        ...


class Catalog:
    """The DuckDB index of one store: a local file, derived from the log and disposable.

    Nothing touches DuckDB until the first :meth:`session`. Each session takes the file
    lock (DuckDB admits one process per file), opens a connection, lets the store fold
    in the commits the index lacks (``feeder``), and closes again. A file DuckDB cannot
    open, or whose write-ahead log it skipped, is moved aside and rebuilt from the log,
    with a warning: it holds nothing the log does not.
    """

    def __init__(self, path: Path, *, lock_timeout: float = 60.0, feeder: Feeder | None = None) -> None:
        self.path = path
        self.feeder = feeder
        self.lock = CatalogLock(path.with_name(path.name + ".lock"), timeout=lock_timeout)
        self._migrated = False
        self._closed = False
        self._feeding = threading.local()
        self._host: duckdb.DuckDBPyConnection | None = None

    def _check_open(self) -> None:
        if self._closed:
            raise CatalogError(f"the catalog index {self.path} was closed with its store; open a new ModelStore")

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            return self._open()
        except CatalogCorruptError as exc:
            self._set_aside(exc)
            return self._open()

    def _open(self) -> duckdb.DuckDBPyConnection:
        wal = self.path.with_name(self.path.name + ".wal")
        if wal.is_symlink() or self.path.is_symlink():
            raise CatalogError(f"{self.path} or its WAL is a symlink; refusing to let the catalog write through it")
        pending = _size(wal)  # a WAL left behind means the last session did not close
        born = self.path.exists()
        try:
            # The attachment forwards every other attribute to the host connection.
            con = cast(duckdb.DuckDBPyConnection, _Attached(self._host_instance(), self))
        except duckdb.Error as exc:
            if _is_disk_full(exc):
                if not born:
                    self._remove()  # the stub DuckDB began and could not finish
                raise _full(self.path, "opening the catalog index", exc) from exc
            raise CatalogCorruptError(str(self.path), f"{type(exc).__name__}: {exc}") from exc
        try:
            if pending:
                self._absorb_wal(con, wal, pending)
            if not self._migrated:
                migrate(con)
                self._migrated = True
        except duckdb.Error as exc:
            con.close()
            if _is_disk_full(exc):
                # A checkpoint that failed for want of space: the file and its WAL are
                # intact and hold every row; they stay for the next session.
                raise _full(self.path, "opening the catalog index", exc) from exc
            if _is_corruption(exc):
                raise CatalogCorruptError(str(self.path), f"{type(exc).__name__}: {exc}") from exc
            raise CatalogError(f"migrating the catalog {self.path} failed: {exc}") from exc
        except BaseException:
            con.close()
            raise
        return con

    def _host_instance(self) -> duckdb.DuckDBPyConnection:
        """The in-memory DuckDB instance sessions attach the index file to.

        Starting a DuckDB instance costs ~15–20 ms (the same for an in-memory one);
        attaching and detaching a file on a running one ~1.5 ms. The file is attached
        only for the length of a session, under the file lock, so other processes open
        it between sessions as before.
        """
        if self._host is None:
            # One thread: catalog operations are point queries, where DuckDB's task
            # scheduling across threads costs more (~0.3 ms a query) than it gains.
            self._host = duckdb.connect(":memory:", config={"threads": 1})
        return self._host

    def _drop_host(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            try:
                host.close()
            except duckdb.Error:
                pass

    def _absorb_wal(self, con: duckdb.DuckDBPyConnection, wal: Path, pending: int) -> None:
        """Fold a left-over WAL into the file now, and refuse the file if DuckDB ignored it.

        DuckDB replays a WAL whose body is damaged with an error, but one whose first
        bytes are damaged (a writer killed mid-way through its first write) it skips
        without a word, and the next checkpoint deletes the evidence. A WAL that
        survives an explicit checkpoint is exactly that case: the index may lack rows,
        so it is rebuilt from the log rather than trusted.
        """
        con.execute("CHECKPOINT")
        if _size(wal):
            con.close()
            raise CatalogCorruptError(str(self.path), f"its write-ahead log {wal.name} ({pending} bytes) is "
                                      "unreadable and DuckDB skipped it")

    def _set_aside(self, exc: CatalogCorruptError) -> None:
        """Move a damaged index out of the way (kept for inspection) so a new one is built."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        for p in (self.path, self.path.with_name(self.path.name + ".wal")):
            if p.exists():
                os.replace(p, p.with_name(f"{p.name}.damaged-{stamp}"))
        self._migrated = False
        logger.warning("the catalog index %s was damaged (%s); it was moved aside and is rebuilt from the "
                       "store's log", self.path, exc.args[0] if exc.args else exc)

    def reset(self) -> None:
        """Delete the index; the next session rebuilds it from the log."""
        with self.lock:
            self._remove()

    def _remove(self) -> None:
        for p in (self.path, self.path.with_name(self.path.name + ".wal")):
            p.unlink(missing_ok=True)
        self._migrated = False

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A catalog session under the lock, caught up with the log (re-entrant within a thread).

        Damage DuckDB finds only when it reads a block (a checksum, a truncated file) is
        handled like damage found at open: while catching up, the index is set aside and
        rebuilt at once; in the caller's queries, it is set aside and the error says to
        retry (the next session rebuilds it).
        """
        self._check_open()
        with self.lock:
            s = self._caught_up()
            try:
                yield s
            except CatalogCorruptError as exc:
                s.con.close()
                self._set_aside(exc)
                raise CatalogCorruptError(str(self.path), f"{exc.args[0] if exc.args else exc}; it was set "
                                          "aside and the next call rebuilds it from the log: retry") from exc
            finally:
                s.con.close()

    def _caught_up(self) -> Session:
        for attempt in range(3):
            s = Session(self._connect(), self.path)
            if self.feeder is None or getattr(self._feeding, "on", False):
                return s
            self._feeding.on = True
            try:
                if self.feeder.catch_up(s):
                    return s
                s.con.close()
                self._remove()
                logger.warning("the catalog index %s indexed another store (or this one before it was "
                               "recreated); rebuilding it from the log", self.path)
            except CatalogCorruptError as exc:
                s.con.close()
                if attempt == 2:
                    raise
                self._set_aside(exc)
            except BaseException:
                s.con.close()
                raise
            finally:
                self._feeding.on = False
        raise CatalogError(f"the catalog index {self.path} could not be rebuilt; delete it and retry")

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for users' SQL, with file access and extensions disabled.

        The index is brought up to date first, in a writing session of its own, unless
        it already is (the feeder says so of the position it records): then the one
        read-only connection is all a query costs. Damage found by the query sets the
        index aside (the next call rebuilds it).
        """
        self._check_open()
        with self.lock:
            con = self._current_reader()
            if con is None:
                with self.session():
                    pass
                try:
                    con = duckdb.connect(str(self.path), read_only=True, config=dict(_READER_CONFIG))
                except duckdb.Error as exc:
                    raise CatalogError(f"opening the catalog {self.path} read-only failed: {exc}") from exc
            try:
                yield con
            except CatalogError as exc:
                if isinstance(exc, CatalogFullError) or not any(marker in str(exc) for marker in _CORRUPTION):
                    raise
                con.close()
                self._set_aside(CatalogCorruptError(str(self.path), str(exc)))
                raise CatalogCorruptError(str(self.path), f"a query found it damaged ({exc}); it was set aside "
                                          "and the next call rebuilds it from the log: retry") from exc
            finally:
                con.close()

    def _current_reader(self) -> duckdb.DuckDBPyConnection | None:
        """A read-only connection if the index is already caught up, else None.

        Only once this process has opened the index for writing (so its migrations are
        applied) and only with no WAL left behind (a WAL is absorbed by a writing session
        first); anything DuckDB objects to sends the caller down the writing path, which
        knows how to heal it.
        """
        if self.feeder is None or not self._migrated or _size(self.path.with_name(self.path.name + ".wal")):
            return None
        try:
            con = duckdb.connect(str(self.path), read_only=True, config=dict(_READER_CONFIG))
        except duckdb.Error:
            return None
        try:
            rows = con.execute("SELECT store_id, position FROM log_index").fetchall()
            if self.feeder.is_current((rows[0][0], rows[0][1]) if rows else None):
                return con
        except duckdb.Error:
            pass
        con.close()
        return None

    def close(self) -> None:
        self._closed = True
        self._drop_host()


class _Attached:
    """A session's connection: the catalog's host instance with the index file attached
    (and in use); ``close`` detaches it, which checkpoints its WAL and releases the file."""

    ALIAS = "cas_index"

    def __init__(self, host: duckdb.DuckDBPyConnection, catalog: Catalog) -> None:
        self._con = host
        self._catalog = catalog
        self._attached = False
        found = host.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                             [self.ALIAS]).fetchone()
        if found is not None and found[0]:
            return  # a session inside a session of this thread: the outer one detaches
        path = str(catalog.path).replace("'", "''")
        host.execute(f"ATTACH '{path}' AS {self.ALIAS}")
        try:
            host.execute(f"USE {self.ALIAS}")
        except BaseException:
            self._detach()
            raise
        self._attached = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def close(self) -> None:
        if self._attached:
            self._attached = False
            try:
                self._con.rollback()  # a transaction an error left open
            except duckdb.Error:
                pass
            self._detach()

    def _detach(self) -> None:
        try:
            self._con.execute("USE memory")
            self._con.execute(f"DETACH {self.ALIAS}")
        except duckdb.Error:
            # The instance is in a state we cannot trust (a failed detach): the next
            # session starts a new one; closing this one releases the file.
            self._catalog._drop_host()


class Session:
    """Catalog operations on one open connection; every mutation is one transaction.

    The catalog's modules take a session and run their SQL through :meth:`rows` and
    :meth:`transaction`; :mod:`.writes` holds the inserts of the fold.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None = None) -> None:
        self.con = con
        self.path = path
        self._in_transaction = False

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        """Every row of ``sql`` with ``params`` bound; DuckDB's errors translated."""
        try:
            return self.con.execute(sql, params).fetchall()
        except duckdb.Error as exc:
            raise translate_error(exc, "a catalog query", self.path) from exc

    @contextmanager
    def transaction(self, what: str) -> Iterator[None]:
        # Re-entrant: folding a batch of log commits runs each operation's own
        # transaction inside the batch's one.
        if self._in_transaction:
            yield
            return
        self.con.begin()
        self._in_transaction = True
        try:
            yield
            self._in_transaction = False
            self.con.commit()
        except duckdb.Error as exc:
            self._in_transaction = False
            self._rollback()
            raise translate_error(exc, what, self.path) from exc
        except BaseException:
            self._in_transaction = False
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            self.con.rollback()
        except duckdb.Error:
            pass

    @contextmanager
    def by_min_max(self, on: bool = True) -> Iterator[None]:
        """Queries inside read tables by their row groups' min/max, never through an ART index.

        For a model with many versions in a table kept in model order (``cluster.py``):
        the index fetches each row from a different vector, the min/max read one row group.
        """
        if not on:
            yield
            return
        self.rows("SET index_scan_max_count = 0")
        self.rows("SET index_scan_percentage = 0")
        try:
            yield
        finally:
            self.rows("RESET index_scan_max_count")
            self.rows("RESET index_scan_percentage")

    # -- reads -----------------------------------------------------------------------

    def content_locations(self, manifest: str) -> tuple[Location | None, dict[str, Location]]:
        """The location of a manifest and of every chunk it lists, in one round trip (tests, tools/bench)."""
        rows = self.rows(
            'SELECT digest, kind, pack, "offset", stored_size, size, codec FROM objects WHERE digest = ? '
            'UNION ALL SELECT o.digest, o.kind, o.pack, o."offset", o.stored_size, o.size, o.codec '
            "FROM objects o WHERE o.digest IN (SELECT chunk FROM manifest_chunks WHERE manifest = ?)",
            [manifest, manifest])
        locs = {r[0]: location_of(r) for r in rows}
        return locs.pop(manifest, None), locs

    def version_row(self, model_id: str, version: int | None) -> VersionRow | None:
        """A version (the head when ``version`` is None), or None if it does not exist (tests, tools/bench)."""
        if version is None:
            # Every commit keeps the head table's copy of the head version (migration 0002).
            head = self.rows(f"SELECT {_HEAD_COLS_ONE} FROM models WHERE model_id = ?", [model_id])
            return _head_versions(head)[0] if head else None
        rows = self.rows(
            f"SELECT {VERSION_COLS} FROM versions v JOIN models m USING (model_id) "
            "WHERE v.model_id = ? AND v.version = ?", [model_id, version])
        return versions_from_rows(rows)[0] if rows else None

    def history(self, model_id: str) -> list[VersionRow]:
        # Two single-filter queries: DuckDB uses the model_id index only for a scan whose
        # one filter is model_id, and a join would scan every version. A long history is
        # read by min/max instead, from the rows the catalog keeps in model order.
        state = self.rows("SELECT deleted, head_version FROM models WHERE model_id = ?", [model_id])
        if not state:
            return []
        with self.by_min_max(state[0][1] >= ZONE_SCAN_VERSIONS):
            rows = self.rows(
                f"SELECT {VERSION_COLS.replace('m.deleted', '?')} FROM versions v "
                "WHERE v.model_id = ? ORDER BY v.version", [state[0][0], model_id])
        return versions_from_rows(rows)

    def stats(self) -> StoreStats:
        (models, versions, logical), = self.rows(
            "SELECT (SELECT count(*) FROM models), count(*), coalesce(sum(logical_size), 0) FROM versions")
        (unique,), = self.rows(
            "SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT chunk, size FROM manifest_chunks "
            "WHERE manifest IN (SELECT manifest FROM versions))")
        (physical, packs), = self.rows("SELECT coalesce(sum(size), 0), count(*) FROM packs")
        (objects,), = self.rows("SELECT count(*) FROM objects")
        return StoreStats(models, versions, logical, unique, physical, packs, objects)


def _head_versions(rows: list[tuple]) -> list[VersionRow]:
    """Rows of _HEAD_COLS_ONE as values; ``metadata`` holds what ModelMetadata needs."""
    hyper, metrics, lineage, logged = (_parse_many([r[i] for r in rows]) for i in (14, 15, 16, 17))
    return [
        VersionRow(
            model_id=r[0], version=r[1], manifest=r[2], kind=r[3], rollback_of=r[4],
            saved_at=aware_utc(r[5]), logical_size=r[6],
            metadata={"experiment_name": r[11], "model_type": r[12], "hyperparameters": h,
                      "metrics": m, "created_at": r[7], "qlib_recorder_id": r[13], "lineage": ln},
            tags=r[9], parents=tuple(r[10]), deleted=r[8], logged=lg,
        )
        for r, h, m, ln, lg in zip(rows, hyper, metrics, lineage, logged)
    ]

def versions_from_rows(rows: list[tuple]) -> list[VersionRow]:
    """Rows of VERSION_COLS as values (tags from the version's copy, parents from its metadata)."""
    return [
        VersionRow(
            model_id=r[0], version=r[1], manifest=r[2], kind=r[3], rollback_of=r[4],
            saved_at=aware_utc(r[5]), logical_size=r[6],
            metadata=md, tags=r[9], parents=parents_of(p) if (p := md.get("parents")) else (), deleted=r[8],
            event_id=r[10], logged=lg,
        )
        for r, md, lg in zip(rows, _parse_many([r[7] for r in rows]), _parse_many([r[11] for r in rows]))
    ]
