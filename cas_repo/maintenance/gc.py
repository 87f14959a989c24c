"""gc, step one: the plan — what is garbage, what is worth repacking, what must not be touched.

Planning changes nothing; ``cas-repo gc --dry-run`` prints the plan and stops. The
execution (:mod:`.collect`) re-checks every decision under the catalog lock, so a plan
that went stale (a save deduplicated onto an object meanwhile) deletes nothing that is
live again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..catalog.maintenance import (PurgeCandidate, catalog_packs, pack_entries, pack_usage, purge_candidates,
                                   unlocated_live)
from ..objects.pack import pack_size
from ..repository import ModelStore
from .common import DEFAULT_GRACE, ProgressFactory, maintenance_lock, no_progress, utcnow
from .orphans import unknown_events
from .scan import list_packs, read_index, scan_packs

DEFAULT_REPACK_BELOW = 0.5


@dataclass(frozen=True, slots=True)
class PackRef:
    """A pack the plan acts on: its name, size, mtime and the live bytes it holds."""

    pack: str
    size: int
    mtime: datetime | None
    live_bytes: int = 0
    live_entries: int = 0
    entries: int = 0

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
    """Everything one gc run would do, and what stops it.

    ``delete``: packs no live or retained version needs, older than the grace period.
    ``repack``: packs whose live fraction is below ``repack_below`` (their live entries
    move to new packs; the old pack is deleted by a later gc, after the grace period).
    ``fresh``: garbage still inside the grace period, kept this time. ``rescued``: garbage
    packs whose index cannot be read, kept for a person to look at. ``missing`` /
    ``unlocated``: live objects whose pack is gone or that the catalog cannot locate;
    ``unknown_events``: garbage packs hold events this catalog never recorded (another
    catalog's saves, or lost rows) — any of these makes gc refuse to delete anything.
    """

    at: datetime
    grace: timedelta
    purge_older_than: timedelta | None
    repack_below: float
    purge: tuple[PurgeCandidate, ...]
    delete: tuple[PackRef, ...]
    repack: tuple[PackRef, ...]
    fresh: tuple[PackRef, ...]
    rescued: tuple[PackRef, ...]
    temp_files: tuple[TempFile, ...]
    missing: tuple[str, ...]
    unlocated: tuple[str, ...]
    unknown_events: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.missing or self.unlocated or self.unknown_events)

    @property
    def delete_bytes(self) -> int:
        return sum(p.size for p in self.delete) + sum(t.size for t in self.temp_files)

    @property
    def repack_bytes(self) -> int:
        """Bytes a repack frees once the old packs go (their size less the live bytes copied)."""
        return sum(p.size - p.live_bytes for p in self.repack)


def plan_gc(store: ModelStore, *, grace: timedelta = DEFAULT_GRACE, purge_older_than: timedelta | None = None,
            repack_below: float = DEFAULT_REPACK_BELOW, now: datetime | None = None,
            progress: ProgressFactory = no_progress) -> GcPlan:
    """Plan a gc run (changes nothing).

    Args:
        grace: only packs and temp files older than this are touched.
        purge_older_than: also purge the versions of models tombstoned, and the versions
            retired, at least this long ago (default: purge nothing).
        repack_below: repack packs whose live bytes are below this fraction of their size
            (0 disables repacking).
    """
    with maintenance_lock(store.catalog.path):
        return _plan(store, grace, purge_older_than, repack_below, now or utcnow(), progress)


def _plan(store: ModelStore, grace: timedelta, purge_older_than: timedelta | None, repack_below: float,
          now: datetime, progress: ProgressFactory) -> GcPlan:
    cutoff = now - grace
    with store.catalog.session() as s:
        purge = (purge_candidates(s, now - purge_older_than, now - purge_older_than)
                 if purge_older_than is not None else [])
        purging = [(p.model_id, p.version) for p in purge]
        usage = pack_usage(s, purging)
        unlocated = unlocated_live(s, purging)
        listed = catalog_packs(s)
        entries = pack_entries(s)
    on_disk = {d.hex: (d, info) for d, info in list_packs(store.objects)}
    delete, repack, fresh = [], [], []
    for name, (digest, info) in sorted(on_disk.items()):
        u = usage.get(name)
        if u is None or u.live_rows == 0:
            ref = PackRef(name, info.size, info.mtime)
            (fresh if info.mtime > cutoff else delete).append(ref)
        elif repack_below > 0 and info.mtime <= cutoff:
            n = entries.get(name)
            if n is None:  # not in the packs table: its own index says
                n = len(read_index(store.objects, digest, info).entries or ())
            ref = PackRef(name, info.size, info.mtime, u.live_bytes, u.live_rows, n)
            # Only a pack with a dead entry can shrink; a fully live one would be rewritten
            # byte for byte into itself.
            if u.live_rows < n and ref.live_fraction < repack_below:
                repack.append(ref)
    missing = sorted(p for p, u in usage.items() if u.live_rows and p not in on_disk)
    # Rows (or a packs row) of a pack that is already gone and that nothing live needs:
    # forgetting them is all there is to do.
    gone = {p for p, u in usage.items() if not u.live_rows and p not in on_disk} | (set(listed) - set(on_disk) - set(usage))
    delete += [PackRef(p, 0, None) for p in sorted(gone)]
    delete, rescued, unknown = _inspect_garbage(store, delete, on_disk, cutoff, progress)
    temps = tuple(TempFile(i.key, i.size, i.mtime) for i in store.objects.backend.list_incomplete()
                  if i.mtime <= cutoff)
    return GcPlan(now, grace, purge_older_than, repack_below, tuple(purge), tuple(delete), tuple(repack),
                  tuple(fresh), tuple(rescued), temps, tuple(missing), tuple(unlocated), unknown)


def _inspect_garbage(store: ModelStore, delete: list[PackRef], on_disk: dict, cutoff: datetime,
                     progress: ProgressFactory) -> tuple[list[PackRef], list[PackRef], tuple[str, ...]]:
    """Read the index of every garbage pack: keep those that cannot be read, and list the
    events in them this catalog does not know.

    An unreadable pack's entries are unknown, so nothing proves it holds no live object;
    a pack holding an event the catalog never recorded belongs to history it has not
    seen (another catalog on the same store, or lost rows) and must not go either.
    """
    listing = [on_disk[p.pack] for p in delete if p.pack in on_disk]
    scans = scan_packs(store.objects, listing, progress=progress, label="gc: reading garbage pack indexes")
    keep = {scan.pack.hex for scan in scans.values() if not scan.readable}
    unknown = tuple(u.ref for u in unknown_events(store, scans.values(), cutoff))
    return [p for p in delete if p.pack not in keep], [p for p in delete if p.pack in keep], unknown
