"""The packs in the object store, sorted by what the log says of them.

- **committed**: a commit mentions the pack (a save's, a repack's or an upgrade's new
  packs) and no gc has forgotten it since: its entries are what loads read.
- **orphan**: no commit mentions it — a save that crashed (or has not committed yet),
  a repack whose commit never happened, a copy two racing saves both wrote. Nothing
  points into it, but an in-flight save may be about to, so gc only forgets it once it
  is older than the grace period, and through a commit (see :mod:`.collect`).
- **leftover**: a committed gc forgot it and did not get to delete the file (it was
  stopped, or a later gc will). No commit can point into it again — writers never
  commit a location in a forgotten pack — so its file may go at any time.

Event records that packs of a format-1 store hold are legacy: the upgrade moved that
history into the log's first commit, and nothing reads them any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..digest import Digest
from ..objects import ObjectInfo


@dataclass(frozen=True, slots=True)
class DiskPacks:
    """Every pack file, by what the log says of it, and the packs the log needs that are gone."""

    committed: dict[str, tuple[Digest, ObjectInfo]]
    orphans: dict[str, tuple[Digest, ObjectInfo]]
    leftovers: dict[str, tuple[Digest, ObjectInfo]]
    gone: frozenset[str]

    @property
    def on_disk(self) -> dict[str, tuple[Digest, ObjectInfo]]:
        return {**self.committed, **self.orphans, **self.leftovers}


def classify(listing: Iterable[tuple[Digest, ObjectInfo]], mentioned: Iterable[str],
             forgotten: Iterable[str]) -> DiskPacks:
    """Sort a listing of the store's packs.

    Args:
        mentioned: the packs the log mentions and has not forgotten (the catalog's
            ``packs`` table and every pack its ``objects`` rows point at).
        forgotten: the packs committed gcs forgot.
    """
    mentioned, forgotten = set(mentioned), set(forgotten)
    committed: dict[str, tuple[Digest, ObjectInfo]] = {}
    orphans: dict[str, tuple[Digest, ObjectInfo]] = {}
    leftovers: dict[str, tuple[Digest, ObjectInfo]] = {}
    for digest, info in listing:
        name = digest.hex
        # A pack mentioned again after a forget (only an older cas-repo could do that) is
        # committed: its entries are in use.
        (committed if name in mentioned else leftovers if name in forgotten else orphans)[name] = (digest, info)
    return DiskPacks(committed, orphans, leftovers, frozenset(mentioned - set(committed)))
