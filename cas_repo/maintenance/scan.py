"""A walk of the object store itself: every pack, its size, mtime and own index.

fsck, the audit's cross-check and rebuild-catalog all start here, and none of this
consults the catalog: it is what the store holds, whatever the catalog says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..digest import Digest
from ..errors import IntegrityError, ObjectNotFoundError, StoreError
from ..location import Location
from ..objects import ObjectInfo, ObjectStore
from .common import ProgressFactory, no_progress, progress_bar


@dataclass(frozen=True, slots=True)
class PackScan:
    """One pack as found in the store; ``entries`` is None when its index cannot be read."""

    pack: Digest
    size: int
    mtime: datetime
    entries: tuple[Location, ...] | None
    error: str | None = None

    @property
    def readable(self) -> bool:
        return self.entries is not None


def list_packs(objects: ObjectStore) -> list[tuple[Digest, ObjectInfo]]:
    """Every pack in the store, with its size and mtime."""
    return list(objects.list_packs())


def read_index(objects: ObjectStore, pack: Digest, info: ObjectInfo) -> PackScan:
    """A pack's own index, or the reason it cannot be read (truncated, not a pack, gone)."""
    try:
        entries = tuple(objects.pack_index(pack))
    except (IntegrityError, ObjectNotFoundError, StoreError) as exc:
        return PackScan(pack, info.size, info.mtime, None, str(exc).split("; ")[0])
    return PackScan(pack, info.size, info.mtime, entries)


def scan_packs(objects: ObjectStore, listing: Sequence[tuple[Digest, ObjectInfo]] | None = None, *,
               progress: ProgressFactory = no_progress, label: str = "reading pack indexes") -> dict[Digest, PackScan]:
    """Read the index of every pack (or of those in ``listing``)."""
    listing = list_packs(objects) if listing is None else listing
    out: dict[Digest, PackScan] = {}
    with progress_bar(progress, len(listing), label) as bar:
        for pack, info in listing:
            out[pack] = read_index(objects, pack, info)
            bar.advance()
    return out


def entry_copies(scans: Iterable[PackScan]) -> dict[str, list[Location]]:
    """Every location of every digest found in the scanned indexes (a digest may be in several packs)."""
    out: dict[str, list[Location]] = {}
    for scan in scans:
        for loc in scan.entries or ():
            out.setdefault(loc.digest.hex, []).append(loc)
    return out


def read_verified(objects: ObjectStore, locs: Sequence[Location]) -> dict[str, bytes | memoryview | Exception]:
    """Verified bytes of each location, or the error that stopped it (one bad entry spoils none other)."""
    out: dict[str, bytes | memoryview | Exception] = {}
    try:
        for loc, data in zip(locs, objects.read_many(locs)):
            out[loc.digest.hex] = data
        return out
    except (IntegrityError, ObjectNotFoundError, StoreError):
        pass
    for loc in locs:
        try:
            out[loc.digest.hex] = objects.read(loc)
        except (IntegrityError, ObjectNotFoundError, StoreError) as exc:
            out[loc.digest.hex] = exc
    return out
