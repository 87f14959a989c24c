"""Numbered, checksummed schema migrations (``migrations/NNNN_name.sql``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import duckdb

from ..digest import hash_bytes
from ..errors import CatalogError

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hash_bytes(self.sql.encode()).hex


def available() -> list[Migration]:
    """Every migration shipped with this version of cas-repo, in order."""
    out = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    out.sort(key=lambda m: m.number)
    if [m.number for m in out] != list(range(1, len(out) + 1)):
        raise CatalogError("migration files are not numbered 0001, 0002, … without gaps")
    return out


def migrate(con: duckdb.DuckDBPyConnection, upto: int | None = None) -> int:
    """Apply pending migrations (up to number ``upto``: all), each in its own transaction;
    returns how many ran.

    Raises:
        CatalogError: an applied migration's checksum differs from the shipped file, or the
            catalog is newer than this cas-repo.
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS cas_migrations (number INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
        "checksum VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
    )
    applied = {n: (name, c) for n, name, c in con.execute(
        "SELECT number, name, checksum FROM cas_migrations").fetchall()}
    shipped = available()
    if applied and max(applied) > len(shipped):
        raise CatalogError(
            f"the catalog was written by a newer cas-repo (schema {max(applied)}, this one knows "
            f"{len(shipped)}); upgrade cas-repo")
    ran = 0
    for m in shipped[:upto]:
        if m.number in applied:
            if applied[m.number][1] != m.checksum:
                raise CatalogError(
                    f"migration {m.number:04d}_{m.name} differs from the one applied to this catalog; "
                    "the catalog may have been made by a modified cas-repo: rebuild it with "
                    "`cas-repo rebuild-catalog`")
            continue
        con.begin()
        try:
            con.execute(m.sql)
            con.execute("INSERT INTO cas_migrations (number, name, checksum) VALUES (?, ?, ?)",
                        [m.number, m.name, m.checksum])
            con.commit()
        except BaseException:
            con.rollback()
            raise
        ran += 1
    return ran
