"""The pieces a mirror is built from: what a commit names, verified pack and checkpoint copies.

Each function here does one idempotent step between two backends; :mod:`.mirror` orders
them so that the mirror is an ordinary, consistent store at every instant.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digest import Digest, hash_bytes
from ..errors import IntegrityError, MirrorError
from ..log import checkpoint
from ..log.commit import Commit
from ..log.log import Log
from ..log.ops import AdoptEntries, ForgetPacks, MoveEntries, SaveOp
from ..log.state import StoreState
from ..objects import ObjectBackend, open_backend
from ..objects.keys import CHECKPOINTS, PACKS, checkpoint_key, pack_key, parse_checkpoint_key, parse_pack_key


def open_location(location: str | os.PathLike[str], options: dict[str, Any] | None, *,
                  source: bool) -> ObjectBackend:
    """The object backend of a store location as the CLI takes it: a folder (its
    ``objects/``) or ``s3://bucket/prefix``. A source folder must hold a store.

    Raises:
        MirrorError: a source folder that holds no store.
    """
    text = os.fspath(location)
    if text.startswith("s3://"):
        return open_backend(text, **(options or {}))
    objects = Path(text.removeprefix("file://")).absolute() / "objects"
    if source and not (objects / "log").is_dir():
        raise MirrorError(f"{text} holds no store (no objects/log folder): give the folder or s3:// URL of the "
                          "store to copy from")
    return open_backend(objects, **(options or {}))


def named_packs(commit: Commit) -> set[str]:
    """The packs a commit's operations point into (their entries must be readable)."""
    out: set[str] = set()
    for op in commit.ops:
        if isinstance(op, SaveOp):
            out |= {p for p, _, _ in op.new_packs} | {l.pack.hex for l in op.new_locations}
        elif isinstance(op, (MoveEntries, AdoptEntries)):
            out |= {p for p, _, _ in op.new_packs} | {l.pack.hex for l in op.locations}
    return out


def forgotten_packs(commit: Commit) -> set[str]:
    """The packs a commit forgets (gc's drops and the sources of its moves)."""
    out: set[str] = set()
    for op in commit.ops:
        if isinstance(op, ForgetPacks):
            out |= set(op.packs)
        elif isinstance(op, MoveEntries):
            out |= set(op.sources)
    return out


@dataclass(frozen=True, slots=True)
class PackCopy:
    """One pack's copy: its name, the bytes put (0: the target had it already), or gone at the source."""

    pack: str
    size: int
    gone: bool = False


def copy_pack(source: ObjectBackend, target: ObjectBackend, pack: str) -> PackCopy:
    """Copy one pack, checked on arrival: its bytes must hash to its name.

    Raises:
        IntegrityError: the source's bytes do not hash to the pack's name (damaged there).
    """
    key = pack_key(Digest.from_hex(pack))
    data = source.get(key)
    if data is None:
        return PackCopy(pack, 0, gone=True)
    actual = hash_bytes(data)
    if actual.hex != pack:
        raise IntegrityError(f"pack {key} at the source does not hash to its name: it is damaged there, and "
                             "was not copied. Run `cas-repo fsck --full` on the source (and `--repair-from` a "
                             "good copy), then mirror again", expected=pack, actual=actual.hex)
    return PackCopy(pack, len(data) if target.put(key, [data]) else 0)


def parallel(pool: ThreadPoolExecutor | None, fn: Any, items: Iterable[Any]) -> Iterator[Any]:
    """``map(fn, items)``, on ``pool`` when there is one (an object store: overlap round trips)."""
    return pool.map(fn, items) if pool is not None else map(fn, items)


def pack_names(backend: ObjectBackend) -> dict[str, int]:
    """Every pack of a backend, name -> size (one listing)."""
    out = {}
    for info in backend.list(PACKS + "/"):
        digest = parse_pack_key(info.key)
        if digest is not None:
            out[digest.hex] = info.size
    return out


def checkpoint_sizes(backend: ObjectBackend) -> dict[int, int]:
    """Every checkpoint of a backend, position -> size (one listing)."""
    out = {}
    for info in backend.list(CHECKPOINTS + "/"):
        p = parse_checkpoint_key(info.key)
        if p is not None:
            out[p] = info.size
    return out


@dataclass(frozen=True, slots=True)
class CheckpointSync:
    """What a checkpoint pass did: positions copied (and their bytes), deleted, and refused."""

    copied: tuple[int, ...] = ()
    copied_bytes: int = 0
    deleted: tuple[int, ...] = ()
    refused: tuple[str, ...] = ()


def sync_checkpoints(source: ObjectBackend, target: ObjectBackend, end: int, theirs: dict[int, int], *,
                     compare: bool) -> CheckpointSync:
    """Copy the source's checkpoints at positions up to ``end`` (the target's log end) that the
    target lacks or holds different bytes of, each checked against its digest header; then
    delete the target's checkpoints the source no longer has. ``theirs``: the source's
    listing. ``compare``: also read both copies of same-sized ones.

    A checkpoint past ``end`` waits for the commit it was taken at: a reader uses one only
    where its log holds that commit.
    """
    ours = checkpoint_sizes(target)
    copied, refused, size = [], [], 0
    for p in sorted(theirs):
        if p > end or (p in ours and ours[p] == theirs[p] and not compare):
            continue
        key = checkpoint_key(p)
        data = source.get(key)
        if data is None:
            continue  # the source replaced it by a newer one meanwhile
        try:
            checkpoint.check_digest(data)
        except IntegrityError as exc:
            refused.append(f"{key}: {exc.message} at the source (not copied; readers skip it there too)")
            continue
        if p in ours:
            if target.get(key) == data:
                continue
            target.delete(key)  # derived data a reader of the mirror wrote: the source's replaces it
        if target.create(key, data):
            copied.append(p)
            size += len(data)
    deleted = tuple(p for p in sorted(ours) if p not in theirs)
    for p in deleted:
        target.delete(checkpoint_key(p))
    return CheckpointSync(tuple(copied), size, deleted, tuple(refused))


def forgotten_by_log(log: Log) -> set[str]:
    """Every pack the log's fold has forgotten (from its newest usable checkpoint on).

    Folds without leaving a checkpoint behind: a mirror writes nothing of its own.
    """
    st = StoreState()
    for position in reversed(log.checkpoints()):
        data = log.read_checkpoint(position)
        if data is None:
            continue
        try:
            candidate = checkpoint.decode(data, log.key)
            log.check_anchor(position, candidate)
        except Exception:  # an unusable checkpoint is skipped, as every reader skips it
            continue
        st = candidate
        break
    for position, commit, chain in log.after(st.position, st.chain):
        st.apply(position, commit.ops, chain)
    return set(st.forgotten)
