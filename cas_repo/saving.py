"""Saving a model: a new version of its ``model_id`` in one log commit.

1. Validate the metadata; serialize, chunk and hash the model (no I/O).
2. Ask the state as last folded which entries the store already holds, and write one
   pack with the rest — outside the ledger's lock, so a large save does not hold up
   other threads' loads.
3. Commit a :class:`~cas_repo.log.ops.SaveOp` at the next position. Its build runs on
   the state the commit lands after (again after every lost race): an entry gc dropped
   meanwhile, or one that was never there, is written now, so the version never points
   at a missing byte.

Objects first, the commit last: a crash leaves at most unreferenced packs, which gc
collects (docs/architecture.md, write order).
"""

from __future__ import annotations

from collections.abc import Callable, Set
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from . import faults
from .content import Content, to_content
from .digest import Digest
from .log.ledger import Ledger
from .log.ops import SaveOp
from .log.state import StoreState
from .manifest import Manifest
from .metadata import ModelMetadata, check_metadata, parse_ref
from .objects.pack import packs_of
from .objects.store import NewEntry, ObjectStore

if TYPE_CHECKING:
    from .qlib_support.recorder import RecorderMirror


def save_model(ledger: Ledger, objects: ObjectStore, now: Callable[[], datetime], model: Any,
               metadata: ModelMetadata, *, dataset: Any = None, recorder: RecorderMirror | None = None) -> str:
    """Append version n+1 of ``metadata.model_id`` holding ``model`` (see ``ModelStore.save_model``)."""
    if dataset is not None:
        from .qlib_support.lineage import add_dataset_lineage  # imports qlib: only when asked

        add_dataset_lineage(metadata, dataset)
    check_metadata(metadata)
    parents = tuple(parse_ref(p) for p in metadata.parents)
    content = to_content(model)
    with recorder.mirrored(model, metadata) if recorder else nullcontext():
        metadata.version = commit_content(ledger, objects, now, metadata, content, parents)
        metadata.digest = content.digest.hex
    return metadata.model_id


def commit_content(ledger: Ledger, objects: ObjectStore, now: Callable[[], datetime], md: ModelMetadata,
                   content: Content, parents: tuple[tuple[str, int], ...]) -> int:
    """Write the entries of ``content`` the store lacks, then commit the version; its number."""
    return commit_manifest(ledger, objects, now, md, content.manifest, content.digest, parents,
                           partial(entries_for, content))


def commit_manifest(ledger: Ledger, objects: ObjectStore, now: Callable[[], datetime], md: ModelMetadata,
                    manifest: Manifest, digest: Digest, parents: tuple[tuple[str, int], ...],
                    fetch: Callable[[Set[str]], list[NewEntry]]) -> int:
    """Commit a version of ``manifest`` (whose digest is ``digest``); its number.

    ``fetch(digests)`` gives the entries (chunks, and the manifest itself) of those
    ``digests``: it is asked only for the ones the store lacks, once before the commit and
    again for any a gc dropped meanwhile. A save passes the model's serialized content; a
    copy from another store reads only the entries asked for.
    """
    needed = [*{c.digest.hex: None for c in manifest.chunks()}, digest.hex]
    with ledger.cached() as st:
        have = st.locate(needed)
    written = objects.write(fetch(set(needed) - have.keys()))
    if faults.ARMED:
        faults.crash_point("objects-written")

    def build(st: StoreState) -> list[SaveOp]:
        nonlocal written
        # A gc may have dropped, since we looked, an entry we meant to reuse or even a
        # pack we just wrote (as unreferenced): store those entries again.
        written = [l for l in written if l.pack.hex not in st.forgotten]
        mine = {l.digest.hex: l for l in written}
        present = st.locate(needed)
        lacking = set(needed) - present.keys() - mine.keys()
        if lacking:
            # A new pack (its nonce makes its name new: never a forgotten one's).
            written += objects.write(fetch(lacking))
        new = tuple(l for l in written if l.digest.hex not in present)
        # Each pack as written (entries found present meanwhile included), so the size
        # the log records is the file's.
        ours = {l.pack for l in new}
        e = st.models.get(md.model_id)
        return [SaveOp.from_metadata(
            md, kind="save", version=(e.head_version if e else 0) + 1, seq=(e.seq if e else 0) + 1,
            manifest=digest.hex, at=now(), logical_size=manifest.size,
            new_bytes=sum(l.stored_size for l in new), parents=parents, new_locations=new,
            manifest_chunks=(tuple((c.digest.hex, c.size) for c in manifest.chunks())
                             if digest.hex not in present else None),
            new_packs=packs_of(list({(l.pack, l.digest): l for l in written if l.pack in ours}.values())),
        )]

    _, ops = ledger.commit(build)
    op = ops[0]
    assert isinstance(op, SaveOp)  # what build returns
    return op.version


def entries_for(content: Content, digests: Set[str]) -> list[NewEntry]:
    """The entries of ``content`` (chunks, and the manifest) whose digests are in ``digests``."""
    out = [e for d, e in content.entries.items() if d.hex in digests]
    if content.digest.hex in digests:
        out.append(content.manifest_entry)
    return out
