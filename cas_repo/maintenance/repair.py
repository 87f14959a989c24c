"""fsck --repair: fix what can be fixed from what the store itself holds.

Repairs only ever add or re-point: a misplaced pack is copied to its right name; a
catalog row whose object is missing, damaged or mislocated is pointed at an intact copy
found (and verified) in another pack; a manifest's chunk list is rewritten from the
manifest; a leftover temp file is removed. No object anything refers to is deleted, and
what cannot be fixed (content with no intact copy) is reported, never papered over.
"""

from __future__ import annotations

from dataclasses import replace

from ..catalog.checks import forget_pack_row, replace_manifest_chunks, repoint, set_pack_size
from ..digest import Digest, hash_bytes
from ..errors import ObjectNotFoundError, StoreError
from ..location import Location
from ..objects.keys import pack_key
from ..repository import ModelStore
from .common import utcnow
from .fsck import Facts, Found
from .scan import entry_copies, read_verified

_REPOINTABLE = ("pack-missing", "pack-damaged", "row-mismatch", "entry-corrupt", "unlocated", "pack-size")


def repair_findings(store: ModelStore, facts: Facts, found: Found, full: bool) -> None:
    """Mark each finding that was fixed as repaired (in place in ``found``)."""
    restored = _restore_misplaced(store, found)
    copies = entry_copies(facts.scans)
    unusable = {p for p, s in facts.scans.items() if not s.readable}
    unusable |= {f.subject for f, _, _ in found.items if f.code in ("pack-damaged", "pack-size", "pack-corrupt")}
    unusable -= facts.intact
    for i, (finding, digests, payload) in enumerate(found.items):
        if finding.repaired:
            continue
        ok = False
        if finding.code == "temp-file":
            store.objects.backend.remove_incomplete(payload)  # type: ignore[arg-type]
            ok = True
        elif finding.code == "stale-pack-row":
            with store.catalog.session() as s:
                forget_pack_row(s, finding.subject)
            ok = True
        elif finding.code == "manifest-mismatch" and payload is not None:
            with store.catalog.session() as s:
                replace_manifest_chunks(s, finding.subject, payload)  # type: ignore[arg-type]
            ok = True
        elif finding.code == "pack-size" and full and finding.subject in facts.intact:
            # The bytes hash to the pack's name, so the file is right and the row was wrong.
            with store.catalog.session() as s:
                set_pack_size(s, finding.subject, payload)  # type: ignore[arg-type]
            ok = True
        elif finding.code == "pack-missing" and finding.subject in restored:
            ok = True
        elif finding.code in _REPOINTABLE and finding.code != "pack-size":
            gone = {finding.subject} if finding.code in ("pack-missing", "pack-damaged") else set()
            ok = _repoint(store, facts, digests, copies, unusable | gone)
        if ok:
            found.items[i] = (replace(finding, repaired=True), digests, payload)


def _restore_misplaced(store: ModelStore, found: Found) -> set[str]:
    """Copy each misplaced pack to the name its bytes hash to; returns the names restored."""
    restored = set()
    for i, (finding, digests, payload) in enumerate(found.items):
        if finding.code != "pack-misplaced":
            continue
        target = Digest.from_hex(payload)  # type: ignore[arg-type]
        try:
            data = store.objects.backend.read(pack_key(Digest.from_hex(finding.subject)))
        except (ObjectNotFoundError, StoreError):
            continue
        if hash_bytes(data) != target:
            continue  # changed since it was checked
        store.objects.backend.put(pack_key(target), [data])
        restored.add(target.hex)
        found.items[i] = (replace(finding, repaired=True), digests, payload)
    return restored


def _repoint(store: ModelStore, facts: Facts, digests: list[str], copies: dict[str, list[Location]],
             unusable: set[str]) -> bool:
    """Point each digest that has a verified copy in a usable pack at it; True if every one did."""
    chosen: list[Location] = []
    for d in digests:
        current = facts.rows.get(d)
        for loc in copies.get(d, []):
            if loc.pack.hex in unusable or loc == current:
                continue
            got = read_verified(store.objects, [loc]).get(d)
            if got is not None and not isinstance(got, Exception):
                chosen.append(loc)
                break
    if chosen:
        listed = set(facts.listed)
        packs = tuple((p.hex, facts.scans[p.hex].size, len(facts.scans[p.hex].entries or ()))
                      for p in {l.pack for l in chosen} if p.hex not in listed)
        with store.catalog.session() as s:
            repoint(s, chosen, packs, utcnow())
    return bool(digests) and len(chosen) == len(digests)
