"""gc, step two: carry out a plan — one log commit, then the files.

The protocol (safe against writers and other gcs on any machine, with no lock):

1. **Plan at position P** (:mod:`.gc`): with the catalog folded up to ``P``, the packs
   to drop (no live entry; orphans — packs no commit mentions — only once older than
   the grace period), the packs to repack, the versions to purge.
2. **Copy first.** The live entries of the packs to repack are read (verified) and
   written into new packs (each pack's nonce gives it a name no pack ever had).
3. **One commit**, built by ``build(state)`` at whatever position it lands: the purges
   (``MarkOp``, ``seq`` = the model's next one; a purge whose reason went away — an
   undelete, a restore — is left out), then ``ForgetPacks`` for the drops and
   ``MoveEntries`` for the repacks. Before that, ``build`` reads every commit after
   ``P`` (:class:`.guard.Guard`): a save whose new pack is a planned orphan, or whose
   manifest or any of its chunks has its row in a planned pack and was not copied out,
   makes that pack unsafe, and it is left out of the commit; so is the content of a
   planned purge that is not committed. Another gc's or a repair's pack operation after
   ``P`` makes this run drop nothing (its plan is stale; the next run plans again).
4. **Files last.** Only once the commit is in the log are the files of the forgotten and
   moved packs deleted. A crash in between leaves forgotten packs on disk: leftovers,
   which the next gc deletes.

Why nothing a version needs is ever deleted. A pack is deleted only if gc's commit ``G``
forgot it. Take any save (or rollback) commit ``W``:

- ``W < G``: ``build`` for ``G`` saw ``W`` among the commits after ``P`` (a lost race
  runs ``build`` again, with the winner folded in). Everything ``W``'s version reads —
  its manifest and every chunk — is either new in ``W`` (its own packs: kept if
  planned), or had its location in the state before ``W``. Locations change only by a
  commit that moves or forgets, after which the run drops nothing; so the location is
  the one the catalog had for it at ``P`` (or a save after ``P`` gave it, in a pack gc
  never planned). If that pack is planned and the entry was not copied, the pack is
  kept. A save that reuses a stored manifest carries no chunk list; gc takes the list
  from its plan (every manifest with a row has one) or from the save after ``P`` that
  stored it. This is what covers a re-save or a rollback onto content gc planned to
  drop with a purge: such a manifest was live at ``P`` only if no purge was planned.
- ``W > G``: the writer built ``W`` on a state that holds ``G``. It finds no location
  in a forgotten pack (moved entries have their new ones), stores again whatever it
  lacks, drops its own written locations that are in forgotten packs, and never gets
  a location in a forgotten pack (a pack's nonce makes every name new): ``W`` cannot
  point into a file gc deletes.
- Purges, undeletes and restores change what is live without a save: a planned purge
  that ``G`` does not commit has its version's content checked like a save's.

Loads that read old locations of moved entries find the file gone, fold the log in
(``G`` gives the new locations) and read again. The grace period is only there so gc
does not make in-flight saves store their bytes twice; correctness never rests on it.
Each step is idempotent: a gc killed anywhere is simply run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from ..digest import Digest
from ..errors import GcRefusedError, ObjectNotFoundError
from ..location import Location
from ..log.ops import ForgetPacks, MarkOp, MoveEntries, Op
from ..log.state import ModelEntry, StoreState, VersionState
from ..objects.keys import pack_key
from ..objects.pack import packs_of
from ..repository import ModelStore
from .common import DEFAULT_GRACE, ProgressFactory, maintenance_lock, no_progress, progress_bar, utcnow
from .gc import DEFAULT_REPACK_BELOW, GcPlan, PackRef, TempFile, plan_gc
from .guard import guard_at
from .marks import Check, MarkRequest, mark_ops
from .reclaim import FLOOR as RECLAIM_FLOOR
from .repack import copy_live

UNSAFE = "kept: a save committed since the plan needs it"
STALE = "kept: another gc or repair changed packs since the plan"
LOST = ("kept: a pack this gc copied into was deleted before its commit (a `gc --no-commit` with a grace "
        "shorter than this repack took?); run gc again")


@dataclass(frozen=True, slots=True)
class GcReport:
    """What a gc run did: its commit, versions purged, packs deleted and repacked, what it kept and why."""

    plan: GcPlan
    dry_run: bool
    position: int | None
    purged: tuple[tuple[str, int], ...]
    deleted: tuple[PackRef, ...]
    repacked: tuple[PackRef, ...]
    new_packs: tuple[str, ...]
    new_pack_bytes: int
    temp_removed: tuple[TempFile, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def freed_bytes(self) -> int:
        return (sum(p.size for p in self.deleted) + sum(p.size for p in self.repacked) - self.new_pack_bytes
                + sum(t.size for t in self.temp_removed))


def refusal(plan: GcPlan) -> str:
    """Why gc does nothing under ``plan``, and what to do."""
    why = []
    if plan.missing:
        why.append(f"{len(plan.missing)} pack(s) that live versions need are missing")
    if plan.unlocated:
        why.append(f"{len(plan.unlocated)} live object(s) have no location in the log")
    return ("gc did nothing: " + "; ".join(why) + ". Run `cas-repo fsck` to see what is affected; "
            "`cas-repo fsck --repair` moves what has an intact copy elsewhere")


def run_gc(store: ModelStore, *, dry_run: bool = False, grace: timedelta = DEFAULT_GRACE,
           purge_older_than: timedelta | None = None, repack_below: float = DEFAULT_REPACK_BELOW,
           progress: ProgressFactory = no_progress) -> GcReport:
    """Plan and (unless ``dry_run``) execute a gc."""
    with maintenance_lock(store.catalog.path):
        plan = plan_gc(store, grace=grace, purge_older_than=purge_older_than, repack_below=repack_below,
                       progress=progress)
        if dry_run:
            return GcReport(plan, True, None, (), (), (), (), 0, (), ())
        return collect_garbage(store, plan, progress=progress)


def collect_garbage(store: ModelStore, plan: GcPlan, *, progress: ProgressFactory = no_progress) -> GcReport:
    """Execute ``plan``: copy, commit, then delete files.

    Raises:
        GcRefusedError: the plan found live objects missing or unlocated; nothing was done.
    """
    if plan.refused:
        raise GcRefusedError(refusal(plan))
    with maintenance_lock(store.catalog.path):
        temps = _remove_temp(store, plan)
        purging = [(c.model_id, c.version) for c in plan.purge]
        dropping = {p.pack for p in plan.delete}
        copies, written, skipped = copy_live(store, plan.repack, purging, progress)
        planned: dict[str, frozenset[str]] = {p: frozenset() for p in dropping}
        planned |= {p: frozenset(l.digest.hex for l in locs) for p, locs in copies.items()}
        with store.catalog.session() as s:
            guard = guard_at(s, plan.position, planned, purging)
        outcome: dict[str, object] = {}

        def build(st: StoreState) -> list[Op]:
            # First: commits_after folds the log in, so ``st`` is at its newest from here on.
            after = list(store.ledger.commits_after(plan.position))
            marks = mark_ops(st, _purges(plan), utcnow(), _purge_check(plan))
            applied = {(m.model_id, m.version) for m in marks}
            not_purged = [r for r in purging if r not in applied and not _purged(st, r)]
            unsafe = guard.unsafe(after, not_purged)
            outcome["unsafe"] = unsafe
            ops: list[Op] = list(marks)
            if unsafe is None:
                return ops
            drop = sorted(p for p in dropping if p not in unsafe and p not in st.forgotten)
            if drop:
                ops.append(ForgetPacks(tuple(drop), utcnow()))
            sources = sorted(p for p in copies if p not in unsafe and p not in st.forgotten)
            locs = [l for p in sources for l in copies[p]]
            used = {l.pack for l in locs}
            outcome["copies_gone"] = bool(sources) and not _copies_still_there(store, used)
            if sources and not {l.pack.hex for l in locs} & st.forgotten and not outcome["copies_gone"]:
                ops.append(MoveEntries(tuple(sources), tuple(locs), packs_of(_unique(written, used)), utcnow()))
            return ops

        position, ops = store.ledger.commit(build)
        dropped = {p for o in ops if isinstance(o, ForgetPacks) for p in o.packs}
        moved = [o for o in ops if isinstance(o, MoveEntries)]
        sources = {p for o in moved for p in o.sources}
        new = {p for o in moved for p, _, _ in o.new_packs}
        # The commit is in the log: no writer can point into these files any more.
        deleted = [r for r in plan.delete if r.pack in dropped] + list(plan.leftovers)
        with progress_bar(progress, len(deleted) + len(sources), "gc: deleting packs") as bar:
            for pack in [r.pack for r in deleted] + sorted(sources):
                _delete(store, pack)
                bar.advance()
    unsafe = outcome.get("unsafe")
    lost = copies if outcome.get("copies_gone") else {}
    skipped += [(p, STALE if unsafe is None else LOST if p in lost else UNSAFE)
                for p in sorted(set(planned) - dropped - sources)]
    return GcReport(plan, False, position if ops else None,
                    tuple((m.model_id, m.version) for m in ops if isinstance(m, MarkOp)),
                    tuple(deleted), tuple(r for r in plan.repack if r.pack in sources), tuple(sorted(new)),
                    sum(size for o in moved for _, size, _ in o.new_packs), temps, tuple(skipped))


def _purges(plan: GcPlan) -> list[MarkRequest]:
    return [MarkRequest(c.model_id, c.version, "purge", c.logical_size, c.new_bytes) for c in plan.purge]


def _purge_check(plan: GcPlan) -> Check:
    """A purge still holds if its reason does: the model is still tombstoned with no event
    since the plan, or the version is still retired since before the cutoff."""
    cutoff = plan.at - (plan.purge_older_than or timedelta(0))
    seqs = {(c.model_id, c.version): c.seq for c in plan.purge}

    def check(e: ModelEntry, ref: VersionState, r: MarkRequest) -> bool:
        if ref.mark == "purge" or r.version in e.aliases.values():
            return False  # an alias set since the plan pins the version (its content stays)
        if e.deleted:
            return e.seq == seqs[(r.model_id, r.version)]
        return ref.mark == "retire" and ref.mark_at is not None and ref.mark_at <= cutoff

    return check


def _purged(st: StoreState, ref: tuple[str, int]) -> bool:
    e = st.models.get(ref[0])
    return e is not None and e.versions[ref[1] - 1].mark == "purge"


def _unique(locs: Sequence[Location], packs: set[Digest]) -> list[Location]:
    """Each entry of ``packs`` once (two writes may have made the same pack)."""
    return list({(l.pack, l.digest): l for l in locs if l.pack in packs}.values())


def _remove_temp(store: ModelStore, plan: GcPlan) -> tuple[TempFile, ...]:
    planned = {t.key for t in plan.temp_files}
    cutoff = plan.at - plan.grace
    removed = []
    for info in store.objects.backend.list_incomplete():
        if info.key in planned and info.mtime <= cutoff and store.objects.backend.remove_incomplete(info):
            removed.append(TempFile(info.key, info.size, info.mtime))
    return tuple(removed)


def _copies_still_there(store: ModelStore, packs: set[Digest]) -> bool:
    """Check the packs a repack wrote are all there, just before its commit; False if one is gone.

    Until this commit is in the log they are orphans to a ``gc --no-commit``
    (:mod:`.reclaim`), which deletes orphans older than its floor: one already deleted
    makes this run move nothing rather than point at a missing file, and one more than a
    third of that floor old is touched, so it cannot age past the floor before the commit.
    """
    now = utcnow()
    try:
        for pack in packs:
            key = pack_key(pack)
            if now - store.objects.backend.stat(key).mtime > RECLAIM_FLOOR / 3:
                store.objects.backend.touch(key)  # on S3 a rewrite: only for a long repack
    except ObjectNotFoundError:
        return False
    return True


def _delete(store: ModelStore, pack: str) -> None:
    try:
        store.objects.delete_pack(Digest.from_hex(pack))
    except ObjectNotFoundError:
        pass  # already gone: forgetting it was all there was to do
