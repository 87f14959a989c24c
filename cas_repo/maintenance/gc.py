"""gc, step one: the plan — what is garbage, what is worth repacking, what stops gc.

Planning changes nothing; ``cas-repo gc --dry-run`` prints the plan and stops. A plan is
made at one log position (the catalog folded up to it); the execution (:mod:`.collect`)
commits it through the ledger, re-checking it against every commit made since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..catalog.maintenance import (
    PurgeCandidate,
    catalog_packs,
    pack_entries,
    pack_usage,
    purge_candidates,
    unlocated_live,
)
from ..objects.pack import pack_size
from ..repository import ModelStore
from .common import DEFAULT_GRACE, ProgressFactory, indexed_position, maintenance_lock, no_progress, utcnow
from .orphans import classify
from .scan import list_packs, read_index

DEFAULT_REPACK_BELOW = 0.5


@dataclass(frozen=True, slots=True)
class PackRef:
    """A pack the plan acts on: its name, size, mtime and the live bytes it holds.

    ``orphan``: no commit mentions it (a crashed save's pack, a repack never committed).
    """

    pack: str
    size: int
    mtime: datetime | None
    live_bytes: int = 0
    live_entries: int = 0
    entries: int = 0
    orphan: bool = False

    @property
    def live_fraction(self) -> float:
        """Live bytes over the bytes of all entries (header and index excluded)."""
        payload = self.size - pack_size(0, self.entries)
        return self.live_bytes / payload if payload > 0 else 1.0


@dataclass(frozen=True, slots=True)
class TempFile:
    key: str
    size: int
    mtime: datetime


@dataclass(frozen=True, slots=True)
class GcPlan:
    """Everything one gc run would do, and what stops it, as of log position ``position``.

    ``delete``: committed packs no live or retained version needs (their files, if still
    there), and orphan packs — packs no commit mentions — older than the grace period.
    ``leftovers``: packs a committed gc forgot but did not delete (deleted with no commit).
    ``repack``: committed packs whose live fraction is below ``repack_below``: their live
    entries are copied to new packs and the old pack is dropped in the same commit.
    ``fresh``: orphan packs inside the grace period (a save may be about to commit them).
    ``missing`` / ``unlocated``: live entries whose pack is gone or that the log locates
    nowhere — either makes gc refuse to do anything.
    """

    at: datetime
    position: int
    grace: timedelta
    purge_older_than: timedelta | None
    repack_below: float
    purge: tuple[PurgeCandidate, ...]
    delete: tuple[PackRef, ...]
    leftovers: tuple[PackRef, ...]
    repack: tuple[PackRef, ...]
    fresh: tuple[PackRef, ...]
    temp_files: tuple[TempFile, ...]
    missing: tuple[str, ...]
    unlocated: tuple[str, ...]

    @property
    def refused(self) -> bool:
        return bool(self.missing or self.unlocated)

    @property
    def delete_bytes(self) -> int:
        return (sum(p.size for p in self.delete) + sum(p.size for p in self.leftovers)
                + sum(t.size for t in self.temp_files))

    @property
    def repack_bytes(self) -> int:
        """Bytes a repack frees: the old packs less new packs of just their live entries."""
        return sum(p.size - pack_size(p.live_bytes, p.live_entries) for p in self.repack)


def plan_gc(store: ModelStore, *, grace: timedelta = DEFAULT_GRACE, purge_older_than: timedelta | None = None,
            repack_below: float = DEFAULT_REPACK_BELOW, now: datetime | None = None,
            progress: ProgressFactory = no_progress) -> GcPlan:
    """Plan a gc run (changes nothing).

    Args:
        grace: only orphan packs and temp files older than this are touched (a save may
            still commit a younger one).
        purge_older_than: also purge the versions of models tombstoned, and the versions
            retired, at least this long ago (default: purge nothing).
        repack_below: repack packs whose live bytes are below this fraction of their size
            (0 disables repacking).
    """
    with maintenance_lock(store.catalog.path):
        return _plan(store, grace, purge_older_than, repack_below, now or utcnow())


def _plan(store: ModelStore, grace: timedelta, purge_older_than: timedelta | None, repack_below: float,
          now: datetime) -> GcPlan:
    cutoff = now - grace
    with store.catalog.session() as s:
        position = indexed_position(s)
        purge = (purge_candidates(s, now - purge_older_than, now - purge_older_than)
                 if purge_older_than is not None else [])
        purging = [(p.model_id, p.version) for p in purge]
        usage = pack_usage(s, purging)
        unlocated = unlocated_live(s, purging)
        listed = catalog_packs(s)
        entries = pack_entries(s)
    with store.ledger.current() as st:
        forgotten = set(st.forgotten)  # only grows: one forgotten later is a leftover too
    disk = classify(list_packs(store.objects), set(listed) | set(usage), forgotten)
    delete, repack = [], []
    for name in sorted(set(listed) | set(usage)):
        u = usage.get(name)
        digest_info = disk.committed.get(name)
        if u is None or u.live_rows == 0:
            # Nothing live in it (or it is gone already): forgetting it is all there is to do.
            info = digest_info[1] if digest_info else None
            delete.append(PackRef(name, info.size if info else 0, info.mtime if info else None,
                                  entries=entries.get(name, 0)))
        elif digest_info is not None and repack_below > 0:
            digest, info = digest_info
            n = entries.get(name)
            if n is None:  # not in the packs table: its own index says
                n = len(read_index(store.objects, digest, info).entries or ())
            ref = PackRef(name, info.size, info.mtime, u.live_bytes, u.live_rows, n)
            # Only a pack with a dead entry can shrink; a fully live one would be rewritten
            # byte for byte into itself.
            if u.live_rows < n and ref.live_fraction < repack_below:
                repack.append(ref)
    fresh: list[PackRef] = []
    for name, (_, info) in sorted(disk.orphans.items()):
        ref = PackRef(name, info.size, info.mtime, orphan=True)
        (fresh if info.mtime > cutoff else delete).append(ref)
    leftovers = tuple(PackRef(name, info.size, info.mtime) for name, (_, info) in sorted(disk.leftovers.items()))
    missing = tuple(sorted(p for p, u in usage.items() if u.live_rows and p in disk.gone))
    temps = tuple(TempFile(i.key, i.size, i.mtime) for i in store.objects.backend.list_incomplete()
                  if i.mtime <= cutoff)
    return GcPlan(now, position, grace, purge_older_than, repack_below, tuple(purge), tuple(delete), leftovers,
                  tuple(repack), tuple(fresh), temps, missing, tuple(unlocated))
