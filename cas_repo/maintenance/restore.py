"""fsck --repair-from: put back what a copy of the store (a mirror, a backup, a plain copy)
holds intact where this store is damaged or missing it.

Nothing from the copy is trusted by where it came from, only by what it proves here:

- a **log commit** is restored at a position this store lacks, or whose commit is damaged
  or does not follow the one before it, only if the copy's commit decodes under this
  store's key and links to this store's chain up to the position before; the walk then
  goes on, so that commits after it must link to it in turn. Commits the copy has past
  this store's end (a cut log) are restored the same way.
- a **checkpoint** is restored where this store's is unusable, only if the copy's decodes
  and carries this log's chain digest at its position; a damaged one with no good copy
  is set aside (readers skip it anyway; it is derived).
- a **pack** is restored where this store's is missing or damaged, only if the copy's
  bytes hash to the pack's name.

A damaged object that a copy replaces is first set aside under ``damaged/<time>/<key>``:
nothing is deleted. What cannot be restored is reported, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..digest import Digest, hash_bytes
from ..errors import CasRepoError, LogDamagedError, StoreError
from ..log import checkpoint
from ..log.commit import GENESIS
from ..objects.backend import ObjectBackend
from ..objects.keys import checkpoint_key, damaged_key, log_key, pack_key, parse_checkpoint_key
from ..repository import ModelStore
from .findings import FsckReport

# Findings about a pack that a good copy of the pack fixes.
_PACK_FINDINGS = ("pack-missing", "pack-damaged", "pack-size", "pack-corrupt", "entry-corrupt")


@dataclass
class Restored:
    """What a restore put back (keys) and what it could not, with the reason."""

    commits: list[int] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _replace(backend: ObjectBackend, key: str, data: bytes, done: Restored, stamp: str) -> bool:
    """Put ``data`` at ``key``, setting aside what is there first; False if a writer took an empty key."""
    old = backend.get(key)
    if old is not None:
        if old == data:
            return True
        aside = damaged_key(key, stamp)
        backend.put(aside, [old])
        if backend.get(aside) != old:
            raise StoreError(f"could not set {key} aside at {aside}; nothing was replaced")
        backend.delete(key)
        done.set_aside.append(aside)
    return backend.create(key, data)


def restore_log(store: ModelStore, source: ObjectBackend, done: Restored, stamp: str) -> None:
    """Walk the chain from commit 1; restore each commit that is missing or does not verify here."""
    log = store.ledger.log
    end = log.newest_listed()
    chain: str | None = GENESIS
    p = 0
    while True:
        p += 1
        try:
            commit = log.read(p)
            if commit is not None:
                chain = log.link(chain, p, commit)
                continue
        except LogDamagedError:
            pass
        data = source.get(log_key(p))
        if data is None:
            if p <= end:
                done.failed.append(f"{log_key(p)}: damaged or missing here, and the copy does not hold it")
            return
        try:
            commit = log.decode(p, data)
            chain = log.link(chain, p, commit)
        except LogDamagedError as exc:
            done.failed.append(f"{log_key(p)}: the copy's commit does not verify in this store ({exc.message})")
            return
        if not _replace(log.backend, log_key(p), data, done, stamp):
            done.failed.append(f"{log_key(p)}: another writer created it during the restore; run fsck again")
            return
        done.commits.append(p)


def restore_checkpoints(store: ModelStore, source: ObjectBackend, report: FsckReport, done: Restored,
                        stamp: str) -> None:
    log = store.ledger.log
    bad = sorted({p for f in report.findings if f.code in ("checkpoint-bad", "checkpoint-mismatch", "log-cut")
                  and (p := parse_checkpoint_key(f.subject)) is not None})
    for position in bad:
        key = checkpoint_key(position)
        data = source.get(key)
        reason = "the copy does not hold it"
        if data is not None:
            try:
                st = checkpoint.decode(data, store.ledger.key)
                log.check_anchor(position, st)
                if _replace(log.backend, key, data, done, stamp):
                    done.checkpoints.append(position)
                    continue
                reason = "another writer created it during the restore"
            except (CasRepoError, ValueError) as exc:
                reason = f"the copy's does not verify here ({exc})"
        old = log.read_checkpoint(position)
        if old is not None:  # derived: set aside so that no reader spends time on it
            aside = damaged_key(key, stamp)
            log.backend.put(aside, [old])
            log.delete_checkpoint(position)
            done.set_aside.append(aside)
        done.failed.append(f"{key}: {reason}; set aside (checkpoints are derived: a later one replaces it)")


def damaged_packs(store: ModelStore, report: FsckReport) -> set[str]:
    """The packs fsck found missing or damaged (for a corrupt entry: the pack the log reads it from)."""
    packs = {f.subject for f in report.findings if f.code in _PACK_FINDINGS and f.code != "entry-corrupt"}
    corrupt = [f.subject for f in report.findings if f.code == "entry-corrupt"]
    if corrupt:
        with store.ledger.current() as st:
            packs |= {st.entries[d].pack.hex for d in corrupt if d in st.entries}
    return packs


def restore_packs(store: ModelStore, source: ObjectBackend, packs: set[str], done: Restored, stamp: str) -> None:
    backend = store.objects.backend
    for pack in sorted(packs):
        key = pack_key(Digest.from_hex(pack))
        data = source.get(key)
        if data is None:
            done.failed.append(f"{key}: the copy does not hold it")
        elif hash_bytes(data).hex != pack:
            done.failed.append(f"{key}: the copy's bytes do not hash to its name (damaged there too)")
        elif _replace(backend, key, data, done, stamp):
            done.packs.append(pack)
