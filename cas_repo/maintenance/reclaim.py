"""``gc --no-commit``: free space on a full disk without writing anything.

Normal gc (and ``delete``) write a log commit first, which a full disk refuses. Three
kinds of file need no commit to go, because no commit can ever point into them:

- **temp files** no write in progress can be using (:func:`cas_repo.objects.temps.abandoned`),
  older than the grace period;
- **leftovers**: packs a committed gc forgot and did not get to delete;
- **orphans**: packs no commit mentions, older than the grace period and never younger
  than :data:`FLOOR`.

The algorithm:

1. Fold the log (the ledger alone: the catalog index, a DuckDB file that may be on the
   full disk itself, is neither opened nor needed). The packs the log mentions are those
   any commit names (new packs of saves, repacks, adoptions) or locates an entry in,
   less those a gc forgot since.
2. List the packs and sort them (:func:`.orphans.classify`); list the temp files.
3. Fold again and read every commit made since step 1: an orphan one of them mentions is
   kept (a save committed it meanwhile).
4. Delete, re-checking each orphan's mtime first (a writer refreshes it when it reuses
   the pack).

What this gives up, and normal gc does not: gc forgets an orphan through a commit, and a
writer that commits later checks its packs against the forgotten set, so gc never needs
the grace period to be right. Here nothing tells a writer, so an orphan pack is only
deleted once it is older than the grace period, and never younger than :data:`FLOOR`:
a save commits its pack right after writing it (milliseconds; at most the time to write
one model's bytes again if a gc forgot some of them meanwhile), and a repack touches the
packs it wrote just before its commit (:mod:`.collect`), failing safe if one is gone. A
writer suspended for longer than that between its pack and its commit is the case this
mode cannot cover; it is why the tool is for a full disk, not for every day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..digest import Digest
from ..errors import ObjectNotFoundError
from ..log.ops import Op
from ..objects.keys import pack_key
from ..repository import ModelStore
from .common import DEFAULT_GRACE, maintenance_lock, utcnow
from .gc import PackRef, TempFile
from .orphans import classify
from .scan import list_packs

# The youngest an orphan pack may be to go without a commit, whatever --grace says.
FLOOR = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class ReclaimReport:
    """What ``gc --no-commit`` removed (or, in a dry run, would remove) and what it kept.

    ``kept``: orphan packs younger than the grace period (or :data:`FLOOR`), which a save
    may still commit, and those a commit mentioned or a writer touched since the listing.
    """

    at: datetime
    position: int
    grace: timedelta
    dry_run: bool
    temp_files: tuple[TempFile, ...]
    orphans: tuple[PackRef, ...]
    leftovers: tuple[PackRef, ...]
    kept: tuple[PackRef, ...]

    @property
    def files(self) -> int:
        return len(self.temp_files) + len(self.orphans) + len(self.leftovers)

    @property
    def freed_bytes(self) -> int:
        return (sum(t.size for t in self.temp_files) + sum(p.size for p in self.orphans)
                + sum(p.size for p in self.leftovers))


def reclaim_space(store: ModelStore, *, grace: timedelta = DEFAULT_GRACE, dry_run: bool = False,
                  now: datetime | None = None) -> ReclaimReport:
    """Delete temp files, leftover packs and old orphan packs, writing no commit.

    Args:
        grace: only orphan packs and temp files older than this go (orphans: at least
            :data:`FLOOR` whatever it says).
        dry_run: report what would go, delete nothing.
    """
    now = now or utcnow()
    cutoff = min(now - grace, now - FLOOR)  # for orphans; temp files have their own floor
    with maintenance_lock(store.catalog.path):
        with store.ledger.current() as st:
            position = st.position
            located = {loc.pack.hex for loc in st.entries.values()}
            forgotten = set(st.forgotten)
        mentioned = (_named_up_to(store, position) - forgotten) | located
        disk = classify(list_packs(store.objects), mentioned, forgotten)
        old: list[PackRef] = []
        young: list[PackRef] = []
        for name, (_, info) in sorted(disk.orphans.items()):
            ref = PackRef(name, info.size, info.mtime, orphan=True)
            (old if info.mtime <= cutoff else young).append(ref)
        leftovers = [PackRef(name, info.size, info.mtime) for name, (_, info) in sorted(disk.leftovers.items())]
        temps = [i for i in store.objects.backend.list_incomplete() if i.mtime <= now - grace]
        if dry_run:
            return ReclaimReport(now, position, grace, True, tuple(TempFile(i.key, i.size, i.mtime) for i in temps),
                                 tuple(old), tuple(leftovers), tuple(young))
        # Step 3: a save that committed one of these since the listing keeps it.
        since = {p for _, ops in store.ledger.commits_after(position) for op in ops for p in _named(op)}
        orphans = [r for r in old if r.pack not in since and _delete_if_old(store, r.pack, cutoff)]
        for ref in leftovers:
            _delete(store, ref.pack)
        removed = [TempFile(i.key, i.size, i.mtime) for i in temps if store.objects.backend.remove_incomplete(i)]
    kept = young + [r for r in old if r not in orphans]
    return ReclaimReport(now, position, grace, False, tuple(removed), tuple(orphans), tuple(leftovers), tuple(kept))


def _named(op: Op) -> set[str]:
    """The packs one operation names: its new packs and the packs of the locations it records."""
    names = {p for p, _, _ in getattr(op, "new_packs", ())}
    for loc in getattr(op, "new_locations", ()) + getattr(op, "locations", ()):
        names.add(loc.pack.hex)
    return names


def _named_up_to(store: ModelStore, position: int) -> set[str]:
    """Every pack the commits up to ``position`` name (read from the log: the state keeps no list)."""
    named: set[str] = set()
    for p, ops in store.ledger.commits_after(0):
        if p > position:
            break
        for op in ops:
            named |= _named(op)
    return named


def _delete_if_old(store: ModelStore, pack: str, cutoff: datetime) -> bool:
    """Delete an orphan pack unless a writer touched it after ``cutoff``; whether it went."""
    try:
        info = store.objects.backend.stat(pack_key(Digest.from_hex(pack)))
    except ObjectNotFoundError:
        return False
    if info.mtime > cutoff:
        return False
    _delete(store, pack)
    return True


def _delete(store: ModelStore, pack: str) -> None:
    try:
        store.objects.delete_pack(Digest.from_hex(pack))
    except ObjectNotFoundError:
        pass
