"""fsck --repair: fix what can be fixed from what the store itself holds, through the log.

Repairs only add: a misplaced pack is copied to its right name; the catalog index is
rebuilt from the log; an old temp file is removed; and every other repair is a log
operation, committed through the ledger like a save:

- a pack that is missing, unreadable, of the wrong size, or holds entries that do not
  verify or are not where the log says: if *every* live entry of it has an intact copy
  somewhere in the store (that pack's own intact entries included), those copies are
  written into a new pack and one ``MoveEntries`` commit points at them and drops the bad
  pack — with gc's re-check of the commits since the plan (:mod:`.guard`);
- a live entry the log locates nowhere: an intact copy is written into a new pack and
  recorded by an ``AdoptEntries`` commit.

What cannot be fixed (content with no intact copy, a wrong log) is reported, never
papered over; nothing anything refers to is deleted (a dropped pack's file is left for
gc).
"""

from __future__ import annotations

from dataclasses import replace

from ..compression import RAW
from ..digest import Digest, hash_bytes
from ..errors import ObjectNotFoundError, StoreError
from ..location import MANIFEST, Location
from ..log.ops import AdoptEntries, MoveEntries, Op
from ..log.state import StoreState
from ..manifest import Manifest
from ..objects import ObjectInfo
from ..objects.keys import pack_key
from ..objects.pack import packs_of
from ..objects.store import NewEntry
from ..repository import ModelStore
from .common import utcnow
from .facts import Facts
from .findings import Found
from .guard import guard_at
from .rebuild import rebuild_index
from .scan import entry_copies, read_verified

# Findings fixed by moving every live entry of their pack to intact copies.
_RESCUED = ("pack-missing", "pack-damaged", "row-mismatch", "entry-corrupt", "pack-size")


def repair_findings(store: ModelStore, facts: Facts, found: Found) -> None:
    """Mark each finding that was fixed as repaired (in place in ``found``)."""
    restored = _restore_misplaced(store, found)
    copies = entry_copies(facts.scans.values())
    fixed: set[str] = set()  # packs whose live entries were moved
    for code in _RESCUED:
        for finding, _, payload in found.items:
            pack = _pack_of(finding.code, finding.subject, payload, facts)
            if finding.code != code or pack is None or pack in fixed or pack in restored:
                continue
            if _rescue(store, facts, pack, copies):
                fixed.add(pack)
    adopted = _adopt(store, facts, [f.subject for f, _, _ in found.items if f.code == "unlocated"], copies)
    for i, (finding, digests, payload) in enumerate(found.items):
        ok = finding.repaired
        if finding.code == "temp-file":
            if isinstance(payload, ObjectInfo):  # fsck attaches the listed leftover
                ok = store.objects.backend.remove_incomplete(payload)  # False: a write took it up again
        elif finding.code == "index-mismatch":
            rebuild_index(store)
            ok = True
        elif finding.code in _RESCUED:
            pack = _pack_of(finding.code, finding.subject, payload, facts)
            ok = pack in fixed or (finding.code == "pack-missing" and pack in restored)
        elif finding.code == "unlocated":
            ok = finding.subject in adopted
        if ok:
            found.items[i] = (replace(finding, repaired=True), digests, payload)


def _pack_of(code: str, subject: str, payload: object, facts: Facts) -> str | None:
    """The committed pack a finding is about (an entry's: the pack the log locates it in)."""
    if code == "entry-corrupt":
        # Only where the log reads it: a damaged spare copy elsewhere needs nothing.
        loc = facts.rows.get(subject)
        return loc.pack.hex if loc is not None and payload in (None, loc.pack.hex) else None
    return subject if code in _RESCUED else None


def _restore_misplaced(store: ModelStore, found: Found) -> set[str]:
    """Copy each misplaced pack to the name its bytes hash to; returns the names restored."""
    restored = set()
    for i, (finding, digests, payload) in enumerate(found.items):
        if finding.code != "pack-misplaced":
            continue
        if not isinstance(payload, str):  # fsck attaches the name the bytes hash to
            continue
        target = Digest.from_hex(payload)
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


def _intact(store: ModelStore, digest: str, candidates: list[Location]) -> tuple[Location, bytes | memoryview] | None:
    """The first of ``candidates`` whose bytes verify against ``digest``, with its bytes."""
    for loc in candidates:
        got = read_verified(store.objects, [loc]).get(digest)
        if got is not None and not isinstance(got, Exception):
            return loc, got
    return None


def _write_copies(store: ModelStore, sources: list[tuple[Location, bytes | memoryview]]) -> list[Location]:
    return store.objects.write([NewEntry(l.digest, l.kind, d, compress=l.codec != RAW) for l, d in sources])


def _rescue(store: ModelStore, facts: Facts, pack: str, copies: dict[str, list[Location]]) -> bool:
    """Move every live entry of ``pack`` to a new pack written from intact copies; True if committed."""
    live = [l for l in facts.rows_by_pack.get(pack, []) if l.digest.hex in facts.live]
    sources = []
    for loc in live:
        got = _intact(store, loc.digest.hex, copies.get(loc.digest.hex, []))
        if got is None:
            return False  # one live entry has no intact copy: a move would lose it
        sources.append(got)
    written = _write_copies(store, sources) if sources else []
    by_digest = {l.digest.hex: l for l in written}
    locs = tuple(by_digest[l.digest.hex] for l in live)
    planned = {pack: frozenset(by_digest)}
    with facts.fresh.session() as s:  # the fold of the log, not an index that may be damaged
        guard = guard_at(s, facts.log.folded, planned)

    def build(st: StoreState) -> list[Op]:
        after = list(store.ledger.commits_after(facts.log.folded))
        if guard.unsafe(after) != set() or pack in st.forgotten or {l.pack.hex for l in locs} & st.forgotten:
            return []
        return [MoveEntries((pack,), locs, packs_of(written), utcnow())]

    _, ops = store.ledger.commit(build)
    return bool(ops)


def _adopt(store: ModelStore, facts: Facts, digests: list[str], copies: dict[str, list[Location]]) -> set[str]:
    """Copy each unlocated live entry that has an intact copy (and the unlocated chunks of
    such a manifest) into a new pack, and record them in one commit; returns those recorded."""
    sources: dict[str, tuple[Location, bytes | memoryview]] = {}
    manifests = []
    todo = list(digests)
    while todo:
        d = todo.pop()
        got = None if d in sources or d in facts.rows else _intact(store, d, copies.get(d, []))
        if got is None:
            continue
        sources[d] = got
        if got[0].kind == MANIFEST:
            chunks = tuple((c.digest.hex, c.size) for c in Manifest.from_bytes(got[1]).chunks())
            manifests.append((d, chunks))
            todo += [c for c, _ in chunks]
    if not sources:
        return set()
    written = _write_copies(store, list(sources.values()))
    locs = tuple(l for l in written if l.digest.hex in sources)

    def build(st: StoreState) -> list[Op]:
        new = tuple(l for l in locs if l.digest.hex not in st.entries)
        if not new or {l.pack.hex for l in new} & st.forgotten:
            return []
        return [AdoptEntries(new, packs_of(written), tuple(manifests), utcnow())]

    _, ops = store.ledger.commit(build)
    return {l.digest.hex for o in ops if isinstance(o, AdoptEntries) for l in o.locations}
