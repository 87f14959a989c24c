"""Copying live entries into new packs: what a repack (and a repair) writes before its commit.

Copies are written, verified on the way, before the commit that points at them: a crash
in between leaves only new packs no commit mentions (orphans, which a later gc drops).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..compression import RAW
from ..errors import IntegrityError, ObjectNotFoundError, StoreError
from ..location import Location
from ..objects.store import NewEntry
from ..repository import ModelStore
from .common import ProgressFactory, progress_bar
from .gc import PackRef

# Live bytes read into memory per repack batch.
REPACK_BATCH_BYTES = 256 << 20


def batches(refs: Sequence[PackRef]) -> list[list[PackRef]]:
    """``refs`` in groups of at most :data:`REPACK_BATCH_BYTES` live bytes (one pack at least)."""
    out: list[list[PackRef]] = [[]]
    size = 0
    for ref in refs:
        if out[-1] and size + ref.live_bytes > REPACK_BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(ref)
        size += ref.live_bytes
    return [b for b in out if b]


def copy_live(store: ModelStore, refs: Sequence[PackRef], purging: Sequence[tuple[str, int]],
              progress: ProgressFactory
              ) -> tuple[dict[str, list[Location]], list[Location], list[tuple[str, str]]]:
    """Copy the live entries of the packs ``refs`` (as live once ``purging`` is purged).

    Returns each pack's copied entries (their new locations), every location written
    (extra entries included, to size the new packs), and the packs left alone, with why.
    """
    from ..catalog.maintenance import live_locations

    copies: dict[str, list[Location]] = {}
    written: list[Location] = []
    skipped: list[tuple[str, str]] = []
    with progress_bar(progress, len(refs), "gc: repacking") as bar:
        for batch in batches(refs):
            with store.catalog.session() as s:
                live = live_locations(s, [r.pack for r in batch], purging)
            entries: list[NewEntry] = []
            for ref in batch:
                locs = live[ref.pack]
                try:
                    data = store.objects.read_many(locs)
                except (IntegrityError, ObjectNotFoundError, StoreError) as exc:
                    skipped.append((ref.pack, f"not repacked: {str(exc).split('; ')[0]} (run `cas-repo fsck`)"))
                    continue
                entries += [NewEntry(l.digest, l.kind, d, compress=l.codec != RAW) for l, d in zip(locs, data)]
                copies[ref.pack] = locs
            if entries:
                out = store.objects.write(entries)
                written += out
                by_digest = {l.digest.hex: l for l in out}
                for pack in [r.pack for r in batch if r.pack in copies]:
                    copies[pack] = [by_digest[l.digest.hex] for l in copies[pack]]
            bar.advance(len(batch))
    return copies, written, skipped
