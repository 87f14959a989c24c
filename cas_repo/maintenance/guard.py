"""What a commit that drops packs re-checks: the commits that landed since its plan.

gc (and fsck's repairs) decide at log position ``P`` that some packs hold nothing any
version needs, or that a pack's live entries have been copied elsewhere. By the time
the commit that drops them lands, other writers may have committed after ``P``. A
:class:`Guard` holds what the plan knew of the planned packs at ``P`` and says, from
those later commits, which planned packs became unsafe to drop (:mod:`.collect` argues
why this suffices).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..log.ops import AdoptEntries, ForgetPacks, MoveEntries, Op, SaveOp

if TYPE_CHECKING:
    from ..catalog import Session


@dataclass(slots=True)
class Guard:
    """The planned packs and what their rows held at the plan's position.

    Attributes:
        position: ``P``, the log position the plan was made at.
        planned: each pack to drop, with the digests copied out of it (none for a drop).
        rows: ``digest -> pack`` for every catalog row pointing at a planned pack.
        manifest_hits: for each manifest with a chunk list, its chunks in ``rows``.
        purges: ``(model_id, version) -> manifest`` of each version the plan purges.
    """

    position: int
    planned: dict[str, frozenset[str]]
    rows: dict[str, str]
    manifest_hits: dict[str, set[str]]
    purges: dict[tuple[str, int], str] = field(default_factory=dict)

    def unsafe(self, commits: Iterable[tuple[int, Sequence[Op]]],
               not_purged: Iterable[tuple[str, int]] = ()) -> set[str] | None:
        """The planned packs that must be kept, given the commits after :attr:`position`.

        Returns None when another gc (or repair) forgot or moved entries out of a planned
        pack since the plan: the plan's rows are stale, so this run drops nothing and a
        later run plans again. Pack operations on other packs leave the planned packs'
        rows as they were, and are only looked into for what they add.

        Args:
            commits: every commit after the plan's position, in order.
            not_purged: the versions the plan meant to purge whose purge will not be
                committed (an undelete or restore came first): their content is live.
        """
        unsafe: set[str] = set()
        learned: dict[str, Sequence[str]] = {}  # chunk lists of manifests first stored after P
        planned = self.planned.keys()
        for _, ops in commits:
            for op in ops:
                if isinstance(op, ForgetPacks) and planned & set(op.packs):
                    return None
                if isinstance(op, MoveEntries) and planned & set(op.sources):
                    return None
                if isinstance(op, (MoveEntries, AdoptEntries)):
                    unsafe |= {l.pack.hex for l in op.locations} & planned
                if isinstance(op, AdoptEntries):
                    learned.update((m, [d for d, _ in chunks]) for m, chunks in op.manifests)
                if not isinstance(op, SaveOp):
                    continue  # events and marks point at no entry
                # A save whose own new pack is a planned orphan (it was in flight at P).
                unsafe |= {l.pack.hex for l in op.new_locations} & planned
                unsafe |= {p for p, _, _ in op.new_packs} & planned
                if op.manifest_chunks is not None:
                    chunks: Iterable[str] = learned.setdefault(op.manifest, [d for d, _ in op.manifest_chunks])
                else:
                    # The manifest was stored before this save's commit: at P (its chunks
                    # in planned packs are in manifest_hits) or by a save after P.
                    known = learned.get(op.manifest)
                    chunks = known if known else self.manifest_hits.get(op.manifest, ())
                unsafe |= self._needed(op.manifest, chunks)
        for ref in not_purged:
            manifest = self.purges.get(ref)
            if manifest is not None:
                unsafe |= self._needed(manifest, self.manifest_hits.get(manifest, ()))
        return unsafe

    def _needed(self, manifest: str, chunks: Iterable[str]) -> set[str]:
        """The planned packs a version of ``manifest`` needs and the plan did not copy from."""
        out = set()
        for d in (manifest, *chunks):
            pack = self.rows.get(d)
            if pack is not None and d not in self.planned.get(pack, frozenset()):
                out.add(pack)
        return out


def guard_at(s: Session, position: int, planned: dict[str, frozenset[str]],
             purges: Sequence[tuple[str, int]] = ()) -> Guard:
    """A guard for ``planned`` from the catalog session ``s`` (folded to ``position`` or later).

    Rows read later than the plan's position only add to what is checked: a pack gains
    rows after ``P`` only through a commit that mentions it, which :meth:`Guard.unsafe`
    flags anyway, and rows move or go only through a commit it refuses to look past.
    """
    from ..catalog.maintenance import chunks_in_packs, rows_in_packs, version_manifests

    packs = sorted(planned)
    return Guard(position, planned, rows_in_packs(s, packs), chunks_in_packs(s, packs),
                 version_manifests(s, list(purges)))
