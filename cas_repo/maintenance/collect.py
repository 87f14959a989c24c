"""gc, step two: carry out a plan — purge, repack, delete — re-checking each step under the lock.

Safety rests on three rules (docs/maintenance.md argues them in full):

1. Catalog rows go before files, and both happen under the catalog lock. A save checks
   which chunks exist under that same lock, so it either sees a chunk's row (and the
   pack is still there when it commits) or does not (and stores the chunk again).
2. Liveness is re-checked under the lock just before a pack's rows are dropped, so a
   save that deduplicated onto "garbage" after the plan was made keeps it alive.
3. A pack's mtime is re-read under the lock: a ``put`` that found the pack already
   present refreshed it, which puts the pack back inside the grace period.

Each step is idempotent, so a gc killed midway is simply run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..catalog.maintenance import forget_packs, live_locations, move_entries, purge_candidates
from ..compression import RAW
from ..digest import Digest
from ..errors import GcRefusedError, IntegrityError, ObjectNotFoundError, StoreError
from ..location import Location
from ..objects.store import NewEntry
from ..repository import ModelStore
from .common import DEFAULT_GRACE, ProgressFactory, batched, maintenance_lock, no_progress, packs_of, progress_bar, utcnow
from .gc import DEFAULT_REPACK_BELOW, GcPlan, PackRef, TempFile, plan_gc
from .marks import MarkRequest, write_marks

# Packs whose rows are dropped (and files deleted) per catalog-lock hold: writers wait
# at most this many deletions.
DELETE_BATCH = 64
# Live bytes read into memory per repack batch.
REPACK_BATCH_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class GcReport:
    """What a gc run did: versions purged, packs deleted and repacked, what it kept and why."""

    plan: GcPlan
    dry_run: bool
    purged: tuple[tuple[str, int], ...]
    deleted: tuple[PackRef, ...]
    repacked: tuple[PackRef, ...]
    new_packs: tuple[str, ...]
    temp_removed: tuple[TempFile, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def freed_bytes(self) -> int:
        return sum(p.size for p in self.deleted) + sum(t.size for t in self.temp_removed)

    @property
    def pending_bytes(self) -> int:
        """Bytes of repacked packs, freed by a later gc once the grace period has passed."""
        return sum(p.size - p.live_bytes for p in self.repacked)


def refusal(plan: GcPlan) -> str:
    """Why gc deletes nothing under ``plan``, and what to do."""
    why = []
    if plan.missing:
        why.append(f"{len(plan.missing)} pack(s) that live versions need are missing")
    if plan.unlocated:
        why.append(f"{len(plan.unlocated)} live object(s) have no location in the catalog")
    if plan.unknown_events:
        why.append(f"unreferenced packs hold {len(plan.unknown_events)} event(s) this catalog never recorded "
                   f"({', '.join(plan.unknown_events[:3])}): saves made through another catalog on this "
                   "store, lost catalog rows, or an interrupted save (any later event of that model "
                   "supersedes it)")
    return ("gc deleted nothing: " + "; ".join(why) + ". Run `cas-repo fsck` to see what is affected; "
            "`cas-repo fsck --repair` re-points objects that have another copy, and "
            "`cas-repo rebuild-catalog` recreates a catalog from every record in the store")


def collect_garbage(store: ModelStore, plan: GcPlan, *, progress: ProgressFactory = no_progress) -> GcReport:
    """Execute ``plan``.

    Raises:
        GcRefusedError: the plan found live objects missing or unlocated; nothing was done.
    """
    if plan.refused:
        raise GcRefusedError(refusal(plan))
    with maintenance_lock(store.catalog.path):
        purged = _purge(store, plan)
        temps = _remove_temp(store, plan)
        repacked, new_packs, skipped = _repack(store, plan, progress)
        deleted, skipped_del = _delete(store, plan, progress)
    return GcReport(plan, False, purged, deleted, repacked, new_packs, temps, skipped + skipped_del)


def run_gc(store: ModelStore, *, dry_run: bool = False, grace: timedelta = DEFAULT_GRACE,
           purge_older_than: timedelta | None = None, repack_below: float = DEFAULT_REPACK_BELOW,
           progress: ProgressFactory = no_progress) -> GcReport:
    """Plan and (unless ``dry_run``) execute a gc, with no other maintenance in between."""
    with maintenance_lock(store.catalog.path):
        plan = plan_gc(store, grace=grace, purge_older_than=purge_older_than, repack_below=repack_below,
                       progress=progress)
        if dry_run:
            return GcReport(plan, True, (), (), (), (), (), ())
        return collect_garbage(store, plan, progress=progress)


def _purge(store: ModelStore, plan: GcPlan) -> tuple[tuple[str, int], ...]:
    if not plan.purge or plan.purge_older_than is None:
        return ()
    cutoff = plan.at - plan.purge_older_than
    with store.catalog.session() as s:
        # Only what still qualifies: an undelete or restore since the plan wins.
        still = {(c.model_id, c.version) for c in purge_candidates(s, cutoff, cutoff)}
        todo = [c for c in plan.purge if (c.model_id, c.version) in still]
        write_marks(s, store, [
            MarkRequest(c.model_id, c.version, "purge",
                        {"reason": f"{c.reason} {c.since:%Y-%m-%d %H:%M:%S} UTC",
                         "logical_size": c.logical_size, "new_bytes": c.new_bytes},
                        c.logical_size, c.new_bytes) for c in todo], utcnow())
    return tuple((c.model_id, c.version) for c in todo)


def _remove_temp(store: ModelStore, plan: GcPlan) -> tuple[TempFile, ...]:
    planned = {t.key for t in plan.temp_files}
    cutoff = plan.at - plan.grace
    removed = []
    for info in store.objects.backend.list_incomplete():
        if info.key in planned and info.mtime <= cutoff:
            store.objects.backend.remove_incomplete(info)
            removed.append(TempFile(info.key, info.size, info.mtime))
    return tuple(removed)


def _mtime(store: ModelStore, pack: str) -> datetime | None:
    try:
        return store.objects.pack_info(Digest.from_hex(pack)).mtime
    except ObjectNotFoundError:
        return None


def _delete(store: ModelStore, plan: GcPlan, progress: ProgressFactory) -> tuple[tuple[PackRef, ...], tuple]:
    cutoff = plan.at - plan.grace
    deleted, skipped = [], []
    with progress_bar(progress, len(plan.delete), "gc: deleting packs") as bar:
        for batch in batched(plan.delete, DELETE_BATCH):
            # Under the catalog lock: a save checks presence and commits under it too.
            with store.catalog.session() as s:
                mtimes = {ref.pack: _mtime(store, ref.pack) for ref in batch}
                fresh = {p for p, m in mtimes.items() if m is not None and m > cutoff}
                forgotten = forget_packs(s, [ref.pack for ref in batch if ref.pack not in fresh])
                for ref in batch:
                    if ref.pack in fresh:
                        skipped.append((ref.pack, "refreshed by a save since the plan"))
                    elif ref.pack not in forgotten:
                        skipped.append((ref.pack, "a version needs it again"))
                    else:
                        if mtimes[ref.pack] is not None:
                            store.objects.delete_pack(Digest.from_hex(ref.pack))
                        deleted.append(ref)
            bar.advance(len(batch))
    return tuple(deleted), tuple(skipped)


def _repack_batches(plan: GcPlan) -> list[list[PackRef]]:
    batches: list[list[PackRef]] = [[]]
    size = 0
    for ref in plan.repack:
        if batches[-1] and size + ref.live_bytes > REPACK_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(ref)
        size += ref.live_bytes
    return [b for b in batches if b]


def _repack(store: ModelStore, plan: GcPlan, progress: ProgressFactory) -> tuple[tuple, tuple, tuple]:
    repacked, new_packs, skipped = [], [], []
    with progress_bar(progress, len(plan.repack), "gc: repacking") as bar:
        for batch in _repack_batches(plan):
            with store.catalog.session() as s:
                live = live_locations(s, [r.pack for r in batch])
            entries, sources = [], {}
            for ref in batch:
                locs = live[ref.pack]
                try:
                    data = store.objects.read_many(locs)
                except (IntegrityError, ObjectNotFoundError, StoreError) as exc:
                    skipped.append((ref.pack, f"not repacked: {str(exc).split('; ')[0]} (run `cas-repo fsck`)"))
                    continue
                entries += [NewEntry(l.digest, l.kind, d, compress=l.codec != RAW) for l, d in zip(locs, data)]
                sources[ref.pack] = (ref, locs)
            if not entries:
                bar.advance(len(batch))
                continue
            written = store.objects.write(entries)
            by_digest = {l.digest.hex: l for l in written}
            packs = packs_of(written)
            for same in {l.pack.hex for l in written} & set(sources):
                # Rewritten byte for byte into itself (nothing in it was dead after all).
                skipped.append((same, "not repacked: nothing in it is garbage"))
                del sources[same]
            for pack in sources:
                # Readers may hold this pack's old locations: its grace period restarts now,
                # and a later gc deletes it once no reader can still be using it.
                store.objects.touch_pack(Digest.from_hex(pack))
            moves: dict[str, list[Location]] = {pack: [by_digest[l.digest.hex] for l in locs]
                                                for pack, (_, locs) in sources.items()}
            with store.catalog.session() as s:
                moved = move_entries(s, moves, packs, utcnow())
            for pack, (ref, _) in sources.items():
                if pack in moved:
                    repacked.append(ref)
                else:
                    skipped.append((pack, "not repacked: a version started using more of it"))
            new_packs += [p for p, _, _ in packs]
            bar.advance(len(batch))
    return tuple(repacked), tuple(new_packs), tuple(skipped)
