"""Catalog sessions over one DuckDB file, serialized across processes by a file lock.

Two modes (see docs/architecture.md):

* **shared** (default): each session takes the lock, opens a short-lived connection and
  closes it, so any number of processes can save and read one store; costs one
  ``connect`` per operation.
* **exclusive**: the store takes the lock once and keeps its connection until closed;
  fastest, but other processes wait until this one closes the store.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import pyarrow as pa

from .. import faults
from ..digest import Digest
from ..errors import CatalogCorruptError, CatalogError, ConcurrentModificationError
from ..location import Location
from .lock import CatalogLock
from .migrations import migrate
from .values import EventCommit, ModelState, SaveCommit, StoreStats, VersionRow

CATALOG_FILE = "catalog.duckdb"
# Above this many rows an Arrow bulk insert beats row-at-a-time inserts.
_BULK_ROWS = 32

_VERSION_COLS = (
    "v.model_id, v.version, v.manifest, v.kind, v.rollback_of, v.saved_at, v.logical_size, "
    "v.metadata_json, m.deleted, v.record"
)


def naive_utc(dt: datetime) -> datetime:
    """DuckDB TIMESTAMP columns hold naive UTC."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.astimezone(timezone.utc).replace(tzinfo=None)


# DuckDB reports damage in these words; such a catalog must never be used further.
_CORRUPTION = ("Corrupt database file", "not a valid DuckDB database", "Failure while replaying WAL",
               "Could not read enough bytes", "does not match stored checksum",
               "database has been invalidated")


def _is_corruption(exc: duckdb.Error) -> bool:
    text = str(exc)
    return any(marker in text for marker in _CORRUPTION)


def _translate(exc: duckdb.Error, what: str, path: Path | None = None) -> CatalogError:
    if _is_corruption(exc):
        return CatalogCorruptError(str(path) if path else "file", f"{what} failed: {exc}")
    if isinstance(exc, (duckdb.ConstraintException, duckdb.TransactionException)):
        return ConcurrentModificationError(f"{what} conflicted with another writer: {exc}")
    text = str(exc)
    if "No space left" in text or "disk is full" in text.lower():
        return CatalogError(f"{what} failed: the disk is full; free space and retry (nothing was recorded)")
    return CatalogError(f"{what} failed: {text}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Catalog:
    """The catalog of one store root."""

    def __init__(self, path: Path, *, exclusive: bool = False, lock_timeout: float = 60.0) -> None:
        self.path = path
        self.exclusive = exclusive
        self.lock = CatalogLock(path.with_name(path.name + ".lock"), timeout=lock_timeout)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._migrated = False
        self._closed = False
        self._guard = threading.Lock()
        if exclusive:
            self.lock.acquire()
            try:
                self._con = self._connect()
            except BaseException:
                self.lock.release()
                raise
        else:
            with self.session():
                pass

    def _connect(self) -> duckdb.DuckDBPyConnection:
        wal = self.path.with_name(self.path.name + ".wal")
        if wal.is_symlink():
            raise CatalogError(f"{wal} is a symlink; refusing to let the catalog write through it")
        pending = _size(wal)  # a WAL left behind means the last session did not close
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            raise CatalogCorruptError(str(self.path), f"{type(exc).__name__}: {exc}") from exc
        try:
            if pending:
                self._absorb_wal(con, wal, pending)
            if not self._migrated:
                migrate(con)
                self._migrated = True
        except duckdb.Error as exc:
            con.close()
            if _is_corruption(exc):
                raise CatalogCorruptError(str(self.path), f"{type(exc).__name__}: {exc}") from exc
            raise CatalogError(f"migrating the catalog {self.path} failed: {exc}") from exc
        except BaseException:
            con.close()
            raise
        return con

    def _absorb_wal(self, con: duckdb.DuckDBPyConnection, wal: Path, pending: int) -> None:
        """Fold a left-over WAL into the file now, and refuse the catalog if DuckDB ignored it.

        DuckDB replays a WAL whose body is damaged with an error, but one whose first
        bytes are damaged it skips without a word: the transactions in it (acknowledged
        saves) are gone, and the next session's checkpoint deletes the evidence. A WAL
        that survives an explicit checkpoint is exactly that case.
        """
        con.execute("CHECKPOINT")
        if _size(wal):
            con.close()
            raise CatalogCorruptError(
                str(self.path), f"its write-ahead log {wal.name} ({pending} bytes) is unreadable and "
                "DuckDB skipped it, so committed versions may be missing; keep the .wal file with it")

    @contextmanager
    def session(self) -> Iterator["Session"]:
        """A catalog session under the lock (re-entrant within a thread)."""
        if self._closed:
            raise CatalogError("the store is closed; open a new ModelStore")
        with self.lock:
            if self._con is not None:
                yield Session(self._con, self.path)
                return
            con = self._connect()
            try:
                yield Session(con, self.path)
            finally:
                con.close()

    def close(self) -> None:
        with self._guard:
            if self._closed:
                return
            self._closed = True
            if self._con is not None:
                try:
                    self._con.close()
                finally:
                    self._con = None
                    self.lock.release()


class Session:
    """Catalog operations on one open connection; every mutation is one transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None = None) -> None:
        self.con = con
        self.path = path

    # -- helpers -------------------------------------------------------------------

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self.con.execute(sql, params).fetchall()
        except duckdb.Error as exc:
            raise _translate(exc, "a catalog query", self.path) from exc

    @contextmanager
    def transaction(self, what: str) -> Iterator[None]:
        self.con.begin()
        try:
            yield
            self.con.commit()
        except duckdb.Error as exc:
            self._rollback()
            raise _translate(exc, what, self.path) from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            self.con.rollback()
        except duckdb.Error:
            pass

    def _insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple],
                     or_ignore: bool = False) -> None:
        # Table and column names come from this module only, never from callers' data.
        if not rows:
            return
        cols = ", ".join(f'"{c}"' for c in columns)
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        if len(rows) < _BULK_ROWS:
            marks = ", ".join("?" for _ in columns)
            self.con.executemany(f"{verb} INTO {table} ({cols}) VALUES ({marks})", rows)
            return
        data = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
        self.con.register("_cas_bulk", data)
        try:
            self.con.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM _cas_bulk")
        finally:
            self.con.unregister("_cas_bulk")

    def _insert_locations(self, locs: Sequence[Location], packs: Sequence[tuple[str, int, int]],
                          at: datetime) -> None:
        if packs:
            self._insert_rows("packs", ("pack", "size", "entries", "created_at"),
                              [(p, size, n, naive_utc(at)) for p, size, n in packs], or_ignore=True)
        if locs:
            rows = [(l.digest.hex, l.kind, l.pack.hex, l.offset, l.stored_size, l.size, l.codec) for l in locs]
            # Two writers can store the same new chunk in their own packs; the first
            # location wins and the other copy is dead weight that gc repacks away.
            present = self.present([r[0] for r in rows])
            rows = [r for r in rows if r[0] not in present]
            self._insert_rows("objects", ("digest", "kind", "pack", "offset", "stored_size", "size", "codec"), rows)

    # -- reads -----------------------------------------------------------------------

    def model_state(self, model_id: str) -> ModelState | None:
        rows = self._all(
            "SELECT model_id, head_version, last_seq, deleted, experiment_name, model_type "
            "FROM models WHERE model_id = ?", [model_id])
        return ModelState(*rows[0]) if rows else None

    def present(self, digests: Sequence[str]) -> dict[str, Location]:
        """The locations of those ``digests`` the catalog knows."""
        if not digests:
            return {}
        rows = self._all(
            'SELECT digest, kind, pack, "offset", stored_size, size, codec FROM objects '
            "WHERE digest IN (SELECT unnest(?::VARCHAR[]))", [list(set(digests))])
        return {
            r[0]: Location(Digest.from_hex(r[0]), r[1], Digest.from_hex(r[2]), r[3], r[4], r[5], r[6])
            for r in rows
        }

    def content_locations(self, manifest: str) -> tuple[Location | None, dict[str, Location]]:
        """The location of a manifest and of every chunk it lists, in one round trip."""
        rows = self._all(
            'SELECT digest, kind, pack, "offset", stored_size, size, codec FROM objects WHERE digest = ? '
            'UNION ALL SELECT o.digest, o.kind, o.pack, o."offset", o.stored_size, o.size, o.codec '
            "FROM objects o WHERE o.digest IN (SELECT chunk FROM manifest_chunks WHERE manifest = ?)",
            [manifest, manifest])
        locs = {
            r[0]: Location(Digest.from_hex(r[0]), r[1], Digest.from_hex(r[2]), r[3], r[4], r[5], r[6])
            for r in rows
        }
        return locs.pop(manifest, None), locs

    def manifest_chunk_digests(self, manifest: str) -> list[str]:
        return [r[0] for r in self._all(
            "SELECT DISTINCT chunk FROM manifest_chunks WHERE manifest = ?", [manifest])]

    def manifest_known(self, manifest: str) -> bool:
        return bool(self._all("SELECT 1 FROM manifest_chunks WHERE manifest = ? LIMIT 1", [manifest]))

    def version_row(self, model_id: str, version: int | None) -> VersionRow | None:
        """A version (the head when ``version`` is None), or None if it does not exist."""
        if version is None:
            where, params = "v.version = m.head_version", [model_id]
        else:
            where, params = "v.version = ?", [model_id, version]
        rows = self._all(
            f"SELECT {_VERSION_COLS} FROM versions v JOIN models m USING (model_id) "
            f"WHERE v.model_id = ? AND {where}", params)
        return self._rows_to_versions(rows)[0] if rows else None

    def history(self, model_id: str) -> list[VersionRow]:
        rows = self._all(
            f"SELECT {_VERSION_COLS} FROM versions v JOIN models m USING (model_id) "
            "WHERE v.model_id = ? ORDER BY v.version", [model_id])
        return self._rows_to_versions(rows)

    def heads(self, experiment_name: str | None, model_type: str | None,
              include_deleted: bool) -> list[VersionRow]:
        """The head version of each model, newest first."""
        rows = self._all(
            f"SELECT {_VERSION_COLS} FROM models m JOIN versions v "
            "ON v.model_id = m.model_id AND v.version = m.head_version "
            "WHERE (? IS NULL OR m.experiment_name = ?) AND (? IS NULL OR m.model_type = ?) "
            "AND (? OR NOT m.deleted) ORDER BY v.saved_at DESC, v.model_id",
            [experiment_name, experiment_name, model_type, model_type, include_deleted])
        return self._rows_to_versions(rows)

    def _rows_to_versions(self, rows: list[tuple]) -> list[VersionRow]:
        if not rows:
            return []
        keys = [(r[0], r[1]) for r in rows]
        tags: dict[tuple[str, int], dict[str, str]] = {}
        parents: dict[tuple[str, int], list[str]] = {}
        ids = sorted({k[0] for k in keys})
        for mid, ver, key, value in self._all(
            "SELECT model_id, version, key, value FROM tags WHERE model_id IN "
            "(SELECT unnest(?::VARCHAR[])) ORDER BY key", [ids]):
            tags.setdefault((mid, ver), {})[key] = value
        for mid, ver, pm, pv in self._all(
            "SELECT model_id, version, parent_model, parent_version FROM lineage "
            "WHERE relation = 'parent' AND model_id IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY parent_model, parent_version", [ids]):
            parents.setdefault((mid, ver), []).append(f"{pm}@{pv}")
        return [
            VersionRow(
                model_id=r[0], version=r[1], manifest=r[2], kind=r[3], rollback_of=r[4],
                saved_at=r[5].replace(tzinfo=timezone.utc), logical_size=r[6],
                metadata=json.loads(r[7]), tags=tags.get((r[0], r[1]), {}),
                parents=tuple(parents.get((r[0], r[1]), ())), deleted=r[8], record=r[9],
            )
            for r in rows
        ]

    def stats(self) -> StoreStats:
        (models, versions, logical), = self._all(
            "SELECT (SELECT count(*) FROM models), count(*), coalesce(sum(logical_size), 0) FROM versions")
        (unique,), = self._all(
            "SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT chunk, size FROM manifest_chunks "
            "WHERE manifest IN (SELECT manifest FROM versions))")
        (physical, packs), = self._all("SELECT coalesce(sum(size), 0), count(*) FROM packs")
        (objects,), = self._all("SELECT count(*) FROM objects")
        return StoreStats(models, versions, logical, unique, physical, packs, objects)

    # -- writes ----------------------------------------------------------------------

    def commit_save(self, c: SaveCommit) -> None:
        """Record a save or rollback: objects, manifest chunks, version, lineage, tags, event, head."""
        at = naive_utc(c.at)
        with self.transaction(f"recording version {c.version} of {c.model_id!r}"):
            self._insert_locations(c.new_locations, c.new_packs, c.at)
            if c.manifest_chunks is not None and not self.manifest_known(c.manifest):
                self._insert_rows("manifest_chunks", ("manifest", "seq", "chunk", "size"),
                                  [(c.manifest, i, d, n) for i, (d, n) in enumerate(c.manifest_chunks)])
            self.con.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "MAP(?::VARCHAR[], ?::DOUBLE[]), ?, ?, ?)",
                [c.model_id, c.version, c.manifest, c.record, c.kind, c.rollback_of,
                 c.experiment_name, c.model_type, naive_utc(c.created_at), at, c.qlib_recorder_id,
                 c.logical_size, c.new_bytes, list(c.metrics), [float(v) for v in c.metrics.values()],
                 json.dumps(c.hyperparameters), json.dumps(c.lineage), c.metadata_json])
            edges = [(c.model_id, c.version, pm, pv, "parent") for pm, pv in c.parents]
            if c.rollback_of is not None:
                edges.append((c.model_id, c.version, c.model_id, c.rollback_of, "rollback_of"))
            self._insert_rows("lineage", ("model_id", "version", "parent_model", "parent_version", "relation"),
                              sorted(set(edges)))
            self._insert_rows("tags", ("model_id", "version", "key", "value"),
                              [(c.model_id, c.version, k, v) for k, v in sorted(c.tags.items())])
            self.con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                             [c.model_id, c.seq, c.kind, c.version, at, c.record])
            self.con.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, false, ?) ON CONFLICT (model_id) DO UPDATE SET "
                "experiment_name = excluded.experiment_name, model_type = excluded.model_type, "
                "head_version = excluded.head_version, last_seq = excluded.last_seq, "
                "deleted = false, updated_at = excluded.updated_at",
                [c.model_id, c.experiment_name, c.model_type, c.version, c.seq, at])
            if faults.ARMED:
                faults.crash_point("inside-transaction")

    def commit_event(self, c: EventCommit) -> None:
        """Record a delete, undelete or tag event."""
        at = naive_utc(c.at)
        with self.transaction(f"recording {c.kind} of {c.model_id!r}"):
            self._insert_locations(c.new_locations, c.new_packs, c.at)
            self.con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                             [c.model_id, c.seq, c.kind, c.version, at, c.record])
            for key, value in sorted(c.set_tags.items()):
                self.con.execute("DELETE FROM tags WHERE model_id = ? AND version = ? AND key = ?",
                                 [c.model_id, c.version, key])
                if value is not None:
                    self.con.execute("INSERT INTO tags VALUES (?, ?, ?, ?)",
                                     [c.model_id, c.version, key, value])
            self.con.execute(
                "UPDATE models SET last_seq = ?, deleted = ?, updated_at = ? WHERE model_id = ?",
                [c.seq, c.deleted, at, c.model_id])
            if faults.ARMED:
                faults.crash_point("inside-transaction")
